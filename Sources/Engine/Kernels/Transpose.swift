/// dst[j, i] = src[i, j] for a rows × cols src whose rows start `srcRowStride` apart
/// (default: contiguous), or ReLU of it.
public func transpose(_ src: UnsafePointer<Float>, rows: Int, cols: Int, srcRowStride: Int? = nil,
                      into dst: UnsafeMutablePointer<Float>, relu: Bool = false) {
    let ld = srcRowStride ?? cols
    // Sixteen source rows gathered into one vector: one store per 16 elements instead of 16
    // scattered ones. The rows left over go element by element.
    let blockRows = rows - rows % 16
    for i0 in stride(from: 0, to: blockRows, by: 16) {
        let block = src + i0 * ld
        for j in 0..<cols {
            var v = Vec16()
            for t in 0..<16 { v[t] = block[t * ld + j] }
            store16(relu ? v.replacing(with: 0, where: .!(v .> 0)) : v, dst + j * rows + i0)
        }
    }
    for i in blockRows..<rows {
        for j in 0..<cols {
            let v = src[i * ld + j]
            dst[j * rows + i] = relu ? (v > 0 ? v : 0) : v
        }
    }
}

/// dst[j, i] = src[i, j] for a contiguous rows × cols src, or ReLU of it.
public func transpose(_ src: UnsafePointer<Float>, rows: Int, cols: Int, into dst: UnsafeMutablePointer<Float>,
                      relu: Bool = false) {
    // Sixteen source rows gathered into one vector: one store per 16 elements instead of 16
    // scattered ones. The rows left over go element by element.
    let blockRows = rows - rows % 16
    for i0 in stride(from: 0, to: blockRows, by: 16) {
        let block = src + i0 * cols
        for j in 0..<cols {
            var v = Vec16()
            for t in 0..<16 { v[t] = block[t * cols + j] }
            store16(relu ? v.replacing(with: 0, where: .!(v .> 0)) : v, dst + j * rows + i0)
        }
    }
    for i in blockRows..<rows {
        for j in 0..<cols {
            let v = src[i * cols + j]
            dst[j * rows + i] = relu ? (v > 0 ? v : 0) : v
        }
    }
}

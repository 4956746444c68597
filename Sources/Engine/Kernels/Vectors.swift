public typealias Vec16 = SIMD16<Float>

@inline(__always) func load16(_ p: UnsafePointer<Float>) -> Vec16 {
    UnsafeRawPointer(p).loadUnaligned(as: Vec16.self)
}

@inline(__always) func store16(_ v: Vec16, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vec16.self)
}

typealias Vec8 = SIMD8<Float>

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> Vec8 {
    UnsafeRawPointer(p).loadUnaligned(as: Vec8.self)
}

@inline(__always) func store8(_ v: Vec8, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vec8.self)
}

/// dst[0..<count] = src[0..<count], or ReLU of it (x > 0 ? x : 0), in vectors and inline:
/// the rows im2col and the convolution copy are a few dozen floats, too short to pay for a
/// call to memmove. The last block overlaps the one before instead of a scalar tail (it
/// stores the same values again). src and dst are the same or do not overlap; in place, an
/// overlapping block rereads values already written, which ReLU leaves unchanged.
@inline(__always) func copyFloats(_ src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, count: Int,
                                  relu: Bool = false) {
    @inline(__always) func move16(_ i: Int) {
        let v = load16(src + i)
        store16(relu ? v.replacing(with: 0, where: .!(v .> 0)) : v, dst + i)
    }
    @inline(__always) func move8(_ i: Int) {
        let v = load8(src + i)
        store8(relu ? v.replacing(with: 0, where: .!(v .> 0)) : v, dst + i)
    }
    guard count >= 16 else {
        guard count >= 8 else {
            for i in 0..<count { dst[i] = relu ? (src[i] > 0 ? src[i] : 0) : src[i] }
            return
        }
        move8(0)
        move8(count - 8)
        return
    }
    var i = 0
    while i + 16 < count {
        move16(i)
        i += 16
    }
    move16(count - 16)
}

/// dst[i] += src[i] for i in 0..<count, in vectors and inline (col2im's channel vectors).
@inline(__always) func addFloats(_ src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i + 16 <= count {
        store16(load16(dst + i) + load16(src + i), dst + i)
        i += 16
    }
    if i + 8 <= count {
        store8(load8(dst + i) + load8(src + i), dst + i)
        i += 8
    }
    while i < count {
        dst[i] += src[i]
        i += 1
    }
}

/// Σ over i in 0..<count of a per-element term, in a fixed order written here and independent
/// of the CPU: sixteen lane-wise running sums over consecutive blocks of 16 (`vector(i)` gives
/// the terms of elements i..<i+16), the tail's terms (`scalar(i)`) added to lanes 0, 1, …, then
/// the lanes combined pairwise (8+8, 4+4, 2+2, 1+1). Every horizontal sum (bias gradients,
/// batch-norm sums) goes through here, so it means the same on AVX2 and AVX-512 builds.
@inline(__always)
public func laneSum(count: Int, _ vector: (Int) -> Vec16, _ scalar: (Int) -> Float) -> Float {
    var acc = Vec16()
    var i = 0
    while i + 16 <= count {
        acc += vector(i)
        i += 16
    }
    var lane = 0
    while i < count {
        acc[lane] += scalar(i)
        i += 1
        lane += 1
    }
    let s8 = acc.lowHalf + acc.highHalf
    let s4 = s8.lowHalf + s8.highHalf
    let s2 = s4.lowHalf + s4.highHalf
    return s2[0] + s2[1]
}

/// Σ x[i] (see `laneSum` for the order).
public func horizontalSum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    laneSum(count: count, { load16(x + $0) }, { x[$0] })
}

/// The first `count` (< 16) floats at p in lanes 0..<count, zeros in the rest: a tail goes
/// through the same vector kernel as a full block, so an element's bits do not depend on
/// where in the array it lies.
@inline(__always) func loadPrefix16(_ p: UnsafePointer<Float>, count: Int) -> Vec16 {
    var v = Vec16()
    for lane in 0..<count { v[lane] = p[lane] }
    return v
}

/// Stores lanes 0..<count of v at p.
@inline(__always) func storePrefix16(_ v: Vec16, _ p: UnsafeMutablePointer<Float>, count: Int) {
    for lane in 0..<count { p[lane] = v[lane] }
}

/// y[i] = f(x)[i] for i in 0..<count, 16 elements at a time, the tail padded (`loadPrefix16`).
@inline(__always) package func mapVectors(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int,
                                  _ f: (Vec16) -> Vec16) {
    var i = 0
    while i + 16 <= count {
        store16(f(load16(x + i)), y + i)
        i += 16
    }
    if i < count { storePrefix16(f(loadPrefix16(x + i, count: count - i)), y + i, count: count - i) }
}

/// z[i] = f(x, y)[i] for i in 0..<count, as `mapVectors` with two inputs.
@inline(__always) package func mapVectors(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                                  into z: UnsafeMutablePointer<Float>, count: Int, _ f: (Vec16, Vec16) -> Vec16) {
    var i = 0
    while i + 16 <= count {
        store16(f(load16(x + i), load16(y + i)), z + i)
        i += 16
    }
    if i < count {
        let tail = count - i
        storePrefix16(f(loadPrefix16(x + i, count: tail), loadPrefix16(y + i, count: tail)), z + i, count: tail)
    }
}

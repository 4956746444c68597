/// exp, log, tanh, erf and sigmoid of 16 Floats at once, in Float, for the activations.
///
/// Determinism (docs/architecture.md §2.3): each function is one fixed sequence of IEEE
/// operations on each lane — range reduction, a polynomial, a rescaling — with fused
/// multiply-adds exactly where the source writes `addingProduct` and nowhere else (Swift does
/// not contract `a * b + c`). No branch depends on the CPU, so an AVX2 build (two registers per
/// vector) and an AVX-512 build (one) give the same bits, and a lane's result depends on that
/// lane's input alone.
///
/// Accuracy: within 2 ulp of the correctly rounded result for every Float input
/// (`VectorMathTests` samples densely; `scripts/check-vector-math` tries all 2³² inputs).
/// Edges: NaN gives NaN; results saturate as the true function does in Float (exp overflows
/// to +inf above 88.72 and is 0 below −103.97; tanh and erf are ±1 far out); tanh and erf
/// keep the sign of zero; log(±0) = −inf, log(negative) = NaN, log(+inf) = +inf.
public enum VectorMath {
    /// e^x.
    @inline(__always) public static func exp(_ x: Vec16) -> Vec16 {
        // Clamping keeps 2^n's two factors normal; beyond these bounds the result is inf or 0
        // anyway, and the product below rounds to it. NaN fails both tests and stays NaN.
        let clamped = x.replacing(with: 89, where: x .> 89).replacing(with: -104, where: x .< -104)
        let (n, r) = reduceByLn2(clamped)
        let p = expm1Polynomial(r) + 1
        // 2^n as two powers of two: n reaches −150, below the smallest normal scale, and the
        // single final rounding of a subnormal result happens in the second product.
        let half = n &>> 1
        return p * powerOfTwo(half) * powerOfTwo(n &- half)
    }

    /// Natural logarithm.
    @inline(__always) public static func log(_ x: Vec16) -> Vec16 {
        // A subnormal is scaled into the normal range first, its exponent corrected after.
        let subnormal = x .< Float.leastNormalMagnitude
        let scaled = x.replacing(with: x * 0x1p23, where: subnormal)
        // x = 2^k · m with m in [√½, √2): k from the bits of x relative to √½'s (0x3f3504f3).
        let bits = SIMD16<Int32>(truncatingIfNeeded: scaled.bitPattern)
        let k = (bits &- 0x3f35_04f3) &>> 23
        let m = Vec16(bitPattern: SIMD16<UInt32>(truncatingIfNeeded: bits &- (k &<< 23)))
        let exponent = Vec16(k.replacing(with: k &- 23, where: subnormal))
        // log m = log(1 + f) = 2 atanh s with s = f/(2 + f), |s| < 0.172, written (as fdlibm
        // does) as f − f²/2 + s·(f²/2 + R(s²)) so that the exact f carries the leading bits.
        let f = m - 1
        let s = f / (2 + f)
        let z = s * s
        var r = Vec16(repeating: 0x1.745d18p-3)  // 2/11
        r = Vec16(repeating: 0x1.c71c72p-3).addingProduct(r, z)  // 2/9
        r = Vec16(repeating: 0x1.24924ap-2).addingProduct(r, z)  // 2/7
        r = Vec16(repeating: 0x1.99999ap-2).addingProduct(r, z)  // 2/5
        r = Vec16(repeating: 0x1.555556p-1).addingProduct(r, z)  // 2/3
        r = r * z
        let halfSquare = 0.5 * f * f
        let logM = s * (halfSquare + r) + exponent * ln2Lo - halfSquare + f
        let result = logM + exponent * ln2Hi
        return result.replacing(with: -.infinity, where: x .== 0)
            .replacing(with: .nan, where: x .< 0)
            .replacing(with: .infinity, where: x .== .infinity)
            .replacing(with: x, where: x .!= x)
    }

    /// Hyperbolic tangent, with the sign of x.
    @inline(__always) public static func tanh(_ x: Vec16) -> Vec16 {
        let magnitude = abs(x)
        // Below 0.625: tanh a = a + a·a²·P(a²), P a degree-5 fit of (tanh(a)/a − 1)/a² (small
        // against a, so its rounding errors are too).
        let t = magnitude * magnitude
        var p = Vec16(repeating: 0x1.17394cp-9)
        p = Vec16(repeating: -0x1.0b6d5ep-7).addingProduct(p, t)
        p = Vec16(repeating: 0x1.636a02p-6).addingProduct(p, t)
        p = Vec16(repeating: -0x1.b9eaa2p-5).addingProduct(p, t)
        p = Vec16(repeating: 0x1.11104ap-3).addingProduct(p, t)
        p = Vec16(repeating: -0x1.555552p-2).addingProduct(p, t)
        let small = magnitude.addingProduct(magnitude, p * t)
        // From 0.625: (e^{2a} − 1)/(e^{2a} + 1), with e^{2a} − 1 = 2^n·(e^r − 1) + (2^n − 1) and
        // n ≥ 2, so that the sum cancels little; 2^n − 1 is exact for n ≤ 24. Beyond 10, tanh is
        // 1 in Float (1 − tanh 10 < 2⁻²⁷); the clamp also turns inf into 1.
        let a = magnitude.replacing(with: 10, where: magnitude .> 10)
        let (n, r) = reduceByLn2(a + a)
        let scale = powerOfTwo(n)
        let em1 = (scale - 1).addingProduct(scale, expm1Polynomial(r))
        let large = em1 / (em1 + 2)
        return withSign(of: x, small.replacing(with: large, where: .!(magnitude .< 0.625)))
    }

    /// The error function, 2/√π ∫₀ˣ e^{−t²} dt.
    @inline(__always) public static func erf(_ x: Vec16) -> Vec16 {
        let magnitude = abs(x)
        // Below 1: erf a = a + a·P(a²), P a degree-7 fit of erf(a)/a − 1 (small, so its
        // rounding errors are small against a).
        let t = magnitude * magnitude
        var p = Vec16(repeating: -0x1.449784p-17)
        p = Vec16(repeating: 0x1.d89ff4p-14).addingProduct(p, t)
        p = Vec16(repeating: -0x1.bcd3a4p-11).addingProduct(p, t)
        p = Vec16(repeating: 0x1.562abep-8).addingProduct(p, t)
        p = Vec16(repeating: -0x1.b829d0p-6).addingProduct(p, t)
        p = Vec16(repeating: 0x1.ce2f0ap-4).addingProduct(p, t)
        p = Vec16(repeating: -0x1.812746p-2).addingProduct(p, t)
        p = Vec16(repeating: 0x1.06eba8p-3).addingProduct(p, t)
        let small = magnitude.addingProduct(magnitude, p)
        // From 1 to 4: erf a = 1 − Q(a − 2.5), Q a degree-16 fit of erfc on [1, 4] (a − 2.5 is
        // exact there). Beyond 4, erf is 1 in Float (erfc 4 < 2⁻²⁵, half an ulp below 1); the clamp also takes inf.
        let a = magnitude.replacing(with: 4, where: magnitude .> 4)
        let u = a - 2.5
        var q = Vec16(repeating: -0x1.834db0p-27)
        q = Vec16(repeating: 0x1.793460p-22).addingProduct(q, u)
        q = Vec16(repeating: -0x1.a76c98p-21).addingProduct(q, u)
        q = Vec16(repeating: -0x1.d0bfe0p-19).addingProduct(q, u)
        q = Vec16(repeating: 0x1.0180aap-16).addingProduct(q, u)
        q = Vec16(repeating: -0x1.04435cp-17).addingProduct(q, u)
        q = Vec16(repeating: -0x1.5132b8p-14).addingProduct(q, u)
        q = Vec16(repeating: 0x1.09bc08p-12).addingProduct(q, u)
        q = Vec16(repeating: -0x1.101444p-12).addingProduct(q, u)
        q = Vec16(repeating: -0x1.1d7e18p-11).addingProduct(q, u)
        q = Vec16(repeating: 0x1.6ebcacp-9).addingProduct(q, u)
        q = Vec16(repeating: -0x1.90db50p-8).addingProduct(q, u)
        q = Vec16(repeating: 0x1.1a8aa4p-7).addingProduct(q, u)
        q = Vec16(repeating: -0x1.119ea8p-7).addingProduct(q, u)
        q = Vec16(repeating: 0x1.64e3b6p-8).addingProduct(q, u)
        q = Vec16(repeating: -0x1.1d82e6p-9).addingProduct(q, u)
        q = Vec16(repeating: 0x1.aab862p-12).addingProduct(q, u)
        let large = 1 - q
        return withSign(of: x, small.replacing(with: large, where: .!(magnitude .< 1)))
    }

    /// The logistic function 1/(1 + e^{−x}), as e^x/(1 + e^x) for negative x so that it reaches
    /// its subnormal values instead of stopping at 0 when e^{−x} overflows.
    @inline(__always) public static func sigmoid(_ x: Vec16) -> Vec16 {
        let e = exp(-abs(x))
        let numerator = Vec16(repeating: 1).replacing(with: e, where: x .< 0)
        return numerator / (1 + e)
    }

    // ln 2 in two parts: ln2Hi = Float(ln 2), ln2Lo = ln 2 − ln2Hi.
    static let ln2Hi: Float = 0x1.62e430p-1
    static let ln2Lo: Float = -0x1.05c610p-29
    // 1.5·2²³: adding it to |v| < 2²² rounds v to an integer kept in the low bits of the sum.
    static let roundingShift: Float = 0x1.8p23

    /// x = n·ln 2 + r with n an integer and |r| ≤ ln2/2 (plus a rounding), for |x| < 2²¹.
    /// x − n·ln2Hi is exact in one fused multiply-add (r is small and n·ln2Hi has ≤ 32 bits).
    @inline(__always) static func reduceByLn2(_ x: Vec16) -> (n: SIMD16<Int32>, r: Vec16) {
        let shifted = x * 0x1.715476p0 + roundingShift  // x / ln 2, two roundings: only n's choice
        let nFloat = shifted - roundingShift
        let n = SIMD16<Int32>(truncatingIfNeeded: shifted.bitPattern) &- Int32(bitPattern: roundingShift.bitPattern)
        let r = x.addingProduct(nFloat, Vec16(repeating: -ln2Hi)).addingProduct(nFloat, Vec16(repeating: -ln2Lo))
        return (n, r)
    }

    /// e^r − 1 for |r| ≤ 0.35: its Taylor series to r⁸ (truncation < 5·10⁻⁹ relative), as
    /// r + r²·(1/2 + r/6 + …).
    @inline(__always) static func expm1Polynomial(_ r: Vec16) -> Vec16 {
        var p = Vec16(repeating: 0x1.a01a02p-16)  // 1/8!
        p = Vec16(repeating: 0x1.a01a02p-13).addingProduct(p, r)  // 1/7!
        p = Vec16(repeating: 0x1.6c16c2p-10).addingProduct(p, r)  // 1/6!
        p = Vec16(repeating: 0x1.111112p-7).addingProduct(p, r)  // 1/5!
        p = Vec16(repeating: 0x1.555556p-5).addingProduct(p, r)  // 1/4!
        p = Vec16(repeating: 0x1.555556p-3).addingProduct(p, r)  // 1/3!
        p = Vec16(repeating: 0.5).addingProduct(p, r)
        return r.addingProduct(r * r, p)
    }

    /// 2^n for n in −126...127, from its bits.
    @inline(__always) static func powerOfTwo(_ n: SIMD16<Int32>) -> Vec16 {
        Vec16(bitPattern: SIMD16<UInt32>(truncatingIfNeeded: (n &+ 127) &<< 23))
    }

    @inline(__always) static func abs(_ x: Vec16) -> Vec16 {
        Vec16(bitPattern: x.bitPattern & 0x7fff_ffff)
    }

    /// |value| with the sign bit of x (so −0 and NaN's sign carry over).
    @inline(__always) static func withSign(of x: Vec16, _ value: Vec16) -> Vec16 {
        Vec16(bitPattern: (value.bitPattern & 0x7fff_ffff) | (x.bitPattern & 0x8000_0000))
    }
}

extension SIMD16 where Scalar == Float {
    @inline(__always) var bitPattern: SIMD16<UInt32> { unsafeBitCast(self, to: SIMD16<UInt32>.self) }
    @inline(__always) init(bitPattern: SIMD16<UInt32>) { self = unsafeBitCast(bitPattern, to: Self.self) }
}

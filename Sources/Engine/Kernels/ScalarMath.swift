/// The project's own transcendental functions in `Double`, for the softmax, the loss, the
/// learning-rate schedule and the synthetic data (the activations use `VectorMath`'s Float kernels).
///
/// Results must not depend on the system's libm (docs/architecture.md §2.3), so exp, log and tanh
/// are computed here in `Double` from IEEE operations alone (+, −, ×, ÷, correctly rounded by
/// the standard) and rounded once to `Float`. Each is accurate to well under one `Float` ulp before
/// that final rounding, which the tests check against Foundation's `Double` functions.
public enum ScalarMath {
    static let ln2Hi = 0.693_147_180_369_123_816_49  // ln 2 with its low 32 bits cleared
    static let ln2Lo = 1.908_214_929_270_587_7e-10  // ln 2 − ln2Hi
    static let invLn2 = 1.442_695_040_888_963_4

    /// e^x. Overflows to +inf above 709.78, underflows to 0 below −745.13; NaN stays NaN.
    public static func exp(_ x: Double) -> Double {
        if x.isNaN { return x }
        if x > 709.78 { return .infinity }
        if x < -745.13 { return 0 }
        // x = n·ln2 + r with |r| ≤ ln2/2, then e^r by its Taylor series (error < 1e-17).
        let n = (x * invLn2).rounded(.toNearestOrEven)
        let r = (x - n * ln2Hi) - n * ln2Lo
        var term = 1.0
        var sum = 1.0
        for i in 1...14 {
            term = term * r / Double(i)
            sum += term
        }
        return scaleByPowerOfTwo(sum, Int(n))
    }

    /// Natural logarithm. log(0) = −inf, log(negative) = NaN, log(+inf) = +inf.
    public static func log(_ x: Double) -> Double {
        if x.isNaN || x < 0 { return .nan }
        if x == 0 { return -.infinity }
        if x.isInfinite { return x }
        // x = m·2^e with m in [√½, √2); log m = 2·atanh(s), s = (m−1)/(m+1), |s| < 0.172.
        var e = Int(x.exponent)
        var m = x.significand  // [1, 2)
        if m > 1.414_213_562_373_095_1 {
            m *= 0.5
            e += 1
        }
        let s = (m - 1) / (m + 1)
        let s2 = s * s
        var power = s
        var sum = s
        var k = 3.0
        while k < 40 {
            power *= s2
            sum += power / k
            k += 2
        }
        return 2 * sum + Double(e) * ln2Hi + Double(e) * ln2Lo
    }

    /// Hyperbolic tangent; odd, ±1 beyond |x| > 20, exact x below |x| < 1e-9.
    public static func tanh(_ x: Double) -> Double {
        let a = Swift.abs(x)
        if a.isNaN { return x }
        if a > 20 { return x > 0 ? 1 : -1 }
        if a < 1e-9 { return x }
        let t: Double
        if a < 0.5 {
            // tanh a = (e^{2a} − 1)/(e^{2a} + 1) with e^{2a} − 1 from its series (no cancellation).
            let em1 = expm1Series(2 * a)
            t = em1 / (em1 + 2)
        } else {
            t = 1 - 2 / (exp(2 * a) + 1)
        }
        return x < 0 ? -t : t
    }

    /// cos(π·t) for t in [0, 1], by its Taylor series around the nearer of 0 and ½
    /// (error < 1e-16); used by the cosine learning-rate schedule.
    public static func cosPi(_ t: Double) -> Double {
        precondition(t >= 0 && t <= 1, "cosPi takes t in [0, 1]")
        // cos(πt) = −sin(π(t − ½)); both series converge fast for |argument| ≤ π/4.
        if t <= 0.25 || t >= 0.75 {
            let x = .pi * (t <= 0.25 ? t : 1 - t)
            var term = 1.0, sum = 1.0
            for n in stride(from: 2, through: 30, by: 2) {
                term = -term * x * x / Double((n - 1) * n)
                sum += term
            }
            return t <= 0.25 ? sum : -sum
        }
        let x = .pi * (t - 0.5)
        var term = x, sum = x
        for n in stride(from: 3, through: 31, by: 2) {
            term = -term * x * x / Double((n - 1) * n)
            sum += term
        }
        return -sum
    }

    /// xⁿ for n ≥ 0 by repeated squaring (a few ulps; Adam's bias corrections β1ᵗ, β2ᵗ).
    public static func power(_ x: Double, _ n: Int) -> Double {
        precondition(n >= 0, "power takes n ≥ 0")
        var (result, base, e) = (1.0, x, n)
        while e > 0 {
            if e & 1 == 1 { result *= base }
            base *= base
            e >>= 1
        }
        return result
    }

    static func expm1Series(_ x: Double) -> Double {
        var term = x
        var sum = x
        for i in 2...20 {
            term = term * x / Double(i)
            sum += term
        }
        return sum
    }

    static func scaleByPowerOfTwo(_ x: Double, _ n: Int) -> Double {
        // Two steps keep each factor a normal Double across the whole range of n.
        let half = n / 2
        return x * Double(sign: .plus, exponent: half, significand: 1)
            * Double(sign: .plus, exponent: n - half, significand: 1)
    }
}

extension ScalarMath {
    @inlinable public static func exp(_ x: Float) -> Float { Float(exp(Double(x))) }
    @inlinable public static func log(_ x: Float) -> Float { Float(log(Double(x))) }
}

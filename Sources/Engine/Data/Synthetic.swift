/// A seeded data set a small network can learn: each of 10 classes is a smooth 28×28 wave
/// pattern of its own, and each sample adds uniform noise to its class's pattern.
public enum Synthetic {
    public static func make(seed: UInt64, count: Int, stream: String, classes: Int = 10, side: Int = 28) -> Dataset {
        let classRNG = CounterRNG(seed: seed, stream: "synthetic-classes")
        let sampleRNG = CounterRNG(seed: seed, stream: "synthetic-\(stream)")
        var prototypes = [[Float]]()
        for k in 0..<classes {
            let base = UInt64(k) * 8
            let fx = 0.15 + 0.5 * classRNG.unitFloat(base), fy = 0.15 + 0.5 * classRNG.unitFloat(base + 1)
            let phase = 6.283 * classRNG.unitFloat(base + 2)
            prototypes.append((0..<(side * side)).map { i in
                let x = Float(i % side), y = Float(i / side)
                return 0.5 + 0.5 * Float(ScalarMath.tanh(Double(3 * sinApprox(fx * x + fy * y + phase))))
            })
        }
        var pixels = [UInt8](repeating: 0, count: count * side * side)
        var labels = [UInt8](repeating: 0, count: count)
        for s in 0..<count {
            let label = sampleRNG.integer(UInt64(s) << 20, below: classes)
            labels[s] = UInt8(label)
            for i in 0..<(side * side) {
                let noise = sampleRNG.unitFloat(UInt64(s) << 20 + 1 + UInt64(i)) - 0.5
                let v = min(max(prototypes[label][i] + 0.6 * noise, 0), 1)
                pixels[s * side * side + i] = UInt8((v * 255).rounded())
            }
        }
        return Dataset(name: stream, shape: [1, side, side], classes: classes, pixels: pixels, labels: labels)
    }

    /// A smooth periodic wave (a parabola approximation of sine) from IEEE operations only.
    static func sinApprox(_ x: Float) -> Float {
        let t = x / 6.283_185 - (x / 6.283_185).rounded(.down)  // [0, 1)
        let u = 2 * t - 1  // [-1, 1)
        return 4 * u * (1 - Swift.abs(u)) * -1
    }
}

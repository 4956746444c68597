import Foundation

/// Per-channel mean and standard deviation of the inputs x/255 (`--normalize`): an input
/// becomes (x/255 − mean)/std in Float, as torchvision's `ToTensor()` then `Normalize(mean,
/// std)` compute it. Computed from the training samples and stored in checkpoints, so that
/// evaluation, prediction and export use the statistics the model was trained with.
public struct InputNormalization: Codable, Sendable, Equatable {
    public let mean: [Float]
    public let std: [Float]

    public init(mean: [Float], std: [Float]) {
        precondition(mean.count == std.count, "one mean and one standard deviation per channel")
        (self.mean, self.std) = (mean, std)
    }

    /// The statistics of every pixel of `dataset`, per channel: the population standard
    /// deviation (1 for a constant channel, which then is only shifted). The byte sums are
    /// integers, exact in any order, and what follows is a fixed sequence of Double
    /// operations: the same bits on every rank and machine.
    public init(statisticsOf dataset: Dataset) {
        let channels = dataset.channels, plane = dataset.sampleSize / channels
        var sums = [UInt64](repeating: 0, count: channels), squares = [UInt64](repeating: 0, count: channels)
        dataset.pixels.withUnsafeBufferPointer { p in
            for sample in 0..<dataset.count {
                for c in 0..<channels {
                    let start = p.baseAddress! + (sample * channels + c) * plane
                    var sum: UInt64 = 0, square: UInt64 = 0
                    for j in 0..<plane {
                        let x = UInt64(start[j])
                        sum += x
                        square += x * x
                    }
                    sums[c] += sum
                    squares[c] += square
                }
            }
        }
        let n = Double(dataset.count * plane)
        let mean = sums.map { Double($0) / n }
        let variance = zip(squares, mean).map { max(Double($0) / n - $1 * $1, 0) }
        self.init(mean: mean.map { Float($0 / 255) },
                  std: variance.map { $0 > 0 ? Float($0.squareRoot() / 255) : 1 })
    }

    /// The input of each pixel byte, channel after channel (256 Floats each): x/255 without
    /// statistics, else (x/255 − mean)/std.
    static func values(_ normalization: InputNormalization?, channels: Int) -> [Float] {
        (0..<channels).flatMap { c in
            (0..<256).map { v -> Float in
                let x = Float(v) / 255
                guard let normalization else { return x }
                return (x - normalization.mean[c]) / normalization.std[c]
            }
        }
    }

    /// Writes the inputs of `count` pixel bytes (a sample of `channels` planes) through the
    /// per-channel tables `values`.
    @inline(__always)
    static func apply(_ values: UnsafePointer<Float>, to pixels: UnsafePointer<UInt8>, count: Int, channels: Int,
                      into out: UnsafeMutablePointer<Float>) {
        let plane = count / channels
        for c in 0..<channels {
            let table = values + c * 256, start = c * plane
            for j in start..<(start + plane) { out[j] = table[Int(pixels[j])] }
        }
    }

    /// One line for logs: "mean 0.2860 std 0.3530" per channel.
    public var summary: String {
        zip(mean, std).map { "mean \(String(format: "%.4f", $0)) std \(String(format: "%.4f", $1))" }.joined(separator: "; ")
    }
}

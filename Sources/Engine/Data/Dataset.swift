import Foundation

/// Labelled images kept as bytes (UInt8 pixels, NCHW per sample); scaled to Float per chunk,
/// x/255 or, once `normalized`, per channel (x/255 − mean)/std.
public struct Dataset: Sendable {
    public let name: String
    /// Per-sample shape: channels, height, width.
    public let shape: [Int]
    public let classes: Int
    public let pixels: [UInt8]
    public let labels: [UInt8]
    /// The statistics inputs are normalised with (nil: x/255 alone).
    public private(set) var normalization: InputNormalization?
    /// The input of each pixel byte, per channel: `channels` tables of 256 Floats.
    private(set) var pixelValues: [Float]

    public init(name: String, shape: [Int], classes: Int, pixels: [UInt8], labels: [UInt8]) {
        precondition(pixels.count == labels.count * shape.reduce(1, *), "pixel count must match labels × sample size")
        self.name = name
        self.shape = shape
        self.classes = classes
        self.pixels = pixels
        self.labels = labels
        pixelValues = InputNormalization.values(nil, channels: shape.count == 3 ? shape[0] : 1)
    }

    public var count: Int { labels.count }
    public var sampleSize: Int { shape.reduce(1, *) }
    /// Channels: the first of three dimensions (one for any other shape).
    public var channels: Int { shape.count == 3 ? shape[0] : 1 }

    /// This data set with inputs normalised by `normalization` (nil: x/255 alone).
    public func normalized(by normalization: InputNormalization?) -> Dataset {
        var copy = self
        copy.normalization = normalization
        copy.pixelValues = InputNormalization.values(normalization, channels: channels)
        return copy
    }

    /// Writes samples `indices` (in that order) as inputs into `destination`, one after another.
    public func scale(_ indices: ArraySlice<Int32>, into destination: UnsafeMutablePointer<Float>) {
        for (k, i) in indices.enumerated() { scaleSample(Int(i), into: destination + k * sampleSize) }
    }

    /// Writes samples `range` as inputs into `destination`, one after another.
    public func scale(_ range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        for (k, i) in range.enumerated() { scaleSample(i, into: destination + k * sampleSize) }
    }

    @inline(__always) func scaleSample(_ i: Int, into out: UnsafeMutablePointer<Float>) {
        let size = sampleSize
        pixels.withUnsafeBufferPointer { p in
            pixelValues.withUnsafeBufferPointer { values in
                InputNormalization.apply(values.baseAddress!, to: p.baseAddress! + i * size, count: size, channels: channels,
                                         into: out)
            }
        }
    }
}

extension Dataset {
    /// Fails on the first label outside 0 ..< `classes`, naming where it came from.
    static func checkLabels(_ labels: [UInt8], classes: Int, source: String) throws {
        guard let bad = labels.firstIndex(where: { Int($0) >= classes }) else { return }
        throw EngineError.invalidData("\(source): label \(labels[bad]) at sample \(bad) is outside the \(classes) classes (0…\(classes - 1)); pass --classes N if the data has more")
    }
}

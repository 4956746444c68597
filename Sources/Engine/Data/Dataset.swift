import Foundation

/// Labelled images kept as bytes (UInt8 pixels, NCHW per sample); scaled to Float per chunk.
public struct Dataset: Sendable {
    public let name: String
    /// Per-sample shape: channels, height, width.
    public let shape: [Int]
    public let classes: Int
    public let pixels: [UInt8]
    public let labels: [UInt8]

    public init(name: String, shape: [Int], classes: Int, pixels: [UInt8], labels: [UInt8]) {
        precondition(pixels.count == labels.count * shape.reduce(1, *), "pixel count must match labels × sample size")
        self.name = name
        self.shape = shape
        self.classes = classes
        self.pixels = pixels
        self.labels = labels
    }

    public var count: Int { labels.count }
    public var sampleSize: Int { shape.reduce(1, *) }

    /// Writes samples `indices` (in that order) as x/255 into `destination`, one after another.
    public func scale(_ indices: ArraySlice<Int32>, into destination: UnsafeMutablePointer<Float>) {
        for (k, i) in indices.enumerated() { scaleSample(Int(i), into: destination + k * sampleSize) }
    }

    /// Writes samples `range` as x/255 into `destination`, one after another.
    public func scale(_ range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        for (k, i) in range.enumerated() { scaleSample(i, into: destination + k * sampleSize) }
    }

    @inline(__always) func scaleSample(_ i: Int, into out: UnsafeMutablePointer<Float>) {
        let size = sampleSize
        pixels.withUnsafeBufferPointer { p in
            let src = p.baseAddress! + i * size
            for j in 0..<size { out[j] = Float(src[j]) / 255 }
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

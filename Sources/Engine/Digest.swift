import Foundation
import Crypto

/// SHA-256 over every parameter and then every buffer, in the layout's canonical order, as
/// little-endian IEEE-754 bytes: two runs agree on it exactly when their weights agree bit for bit.
public func parameterDigest(parameters: [Float], buffers: [Float]) -> String {
    var hasher = SHA256()
    for array in [parameters, buffers] {
        array.map { $0.bitPattern.littleEndian }.withUnsafeBytes { hasher.update(bufferPointer: $0) }
    }
    return hasher.finalize().map { String(format: "%02x", $0) }.joined()
}

extension DataSplits {
    /// Sizes, shape, classes and a SHA-256 of every label and pixel of both splits: equal on
    /// two processes exactly when they hold the same data (wherever its files are).
    public var identity: String {
        var hasher = SHA256()
        for split in [train, test] {
            split.labels.withUnsafeBytes { hasher.update(bufferPointer: $0) }
            split.pixels.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        }
        let hash = hasher.finalize().prefix(8).map { String(format: "%02x", $0) }.joined()
        return "\(train.count) train + \(test.count) test of \(train.shape.map(String.init).joined(separator: "×")), \(train.classes) classes, sha256 \(hash)…"
    }
}

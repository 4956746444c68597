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

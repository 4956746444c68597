import Crypto
import CZlib
import CZstd
import Foundation

/// A training state on disk (docs/architecture.md §4, `docs/checkpoint-format.md`):
///
///     magic "SCNNCKPT" (8 bytes) | format version UInt32 LE | manifest length UInt32 LE
///     | CRC-32 of the manifest UInt32 LE
///     manifest: UTF-8 JSON (`CheckpointManifest`)
///     payload: one zstd frame (with its content checksum) of every tensor as little-endian
///              Float32 — parameters, then buffers, then the optimizer's state tensors
///              (SGD's momentum; Adam's two moments) — byte-shuffled if the manifest says so.
///
/// Decoding trusts nothing: every length is bounded by the file size, the tensor table is
/// checked against the model the manifest names before the payload is allocated, and both
/// zstd's checksum and the manifest's SHA-256 of the payload are verified.
public struct Checkpoint: Sendable {
    public static let magic = Array("SCNNCKPT".utf8)
    /// 3: the optimizer's kind and Adam's settings, gradient clipping and label smoothing in
    /// the hyperparameters, and the optimizer's state tensors by its kind; 2: the
    /// hyperparameters as one object (`Hyperparameters`), SGD only; 1 listed them flat.
    public static let formatVersion: UInt32 = 3
    /// Versions this build reads: a version-2 file is an SGD run without clipping or smoothing.
    public static let readableVersions: ClosedRange<UInt32> = 2...formatVersion
    static let headerSize = 20
    static let maximumManifestSize = 1 << 20
    /// The largest state we load: 2 GiB of floats, far above any model here.
    public static let maximumPayloadFloats = 1 << 29

    public var manifest: CheckpointManifest
    public var parameters: [Float]
    public var buffers: [Float]
    /// The optimizer's state tensors (`Optimizer.stateNames`), one after the other, each one
    /// float per parameter.
    public var optimizerState: [Float]
    /// The format version of the file it was read from (`formatVersion` when made in memory).
    public var fileVersion = formatVersion

    public init(manifest: CheckpointManifest, parameters: [Float], buffers: [Float], optimizerState: [Float]) {
        self.manifest = manifest
        self.parameters = parameters
        self.buffers = buffers
        self.optimizerState = optimizerState
    }

    /// The tensor table of a model's state trained by `optimizer`, in payload order.
    public static func tensorTable(layout: ParameterLayout, optimizer: Optimizer) -> [CheckpointManifest.Tensor] {
        let parameterCount = layout.parameterCount, bufferCount = layout.bufferCount
        let state = optimizer.stateNames.enumerated().flatMap { k, stateName in
            layout.parameters.map { CheckpointManifest.Tensor(name: "\(stateName).\($0.name)", shape: $0.shape,
                                                              offset: parameterCount * (1 + k) + bufferCount + $0.offset) }
        }
        return layout.parameters.map { .init(name: $0.name, shape: $0.shape, offset: $0.offset) }
            + layout.buffers.map { .init(name: $0.name, shape: $0.shape, offset: parameterCount + $0.offset) } + state
    }

    /// Floats in the payload of a model's state trained by `optimizer`.
    public static func payloadFloats(layout: ParameterLayout, optimizer: Optimizer) -> Int {
        layout.parameterCount * (1 + optimizer.stateNames.count) + layout.bufferCount
    }

    /// The file's bytes. `shuffle` stores byte 0 of every float, then byte 1, … before zstd,
    /// which groups the slowly varying exponent bytes.
    public func encoded(shuffle: Bool = true, level: Int32 = 3) throws -> [UInt8] {
        var payload = [UInt8]()
        payload.reserveCapacity(4 * (parameters.count + buffers.count + optimizerState.count))
        for array in [parameters, buffers, optimizerState] {
            for v in array { withUnsafeBytes(of: v.bitPattern.littleEndian) { payload.append(contentsOf: $0) } }
        }
        var manifest = self.manifest
        manifest.payloadFloats = payload.count / 4
        manifest.payloadSHA256 = SHA256.hash(data: payload).map { String(format: "%02x", $0) }.joined()
        manifest.byteShuffled = shuffle
        let frame = try Zstd.compress(shuffle ? Checkpoint.shuffled(payload) : payload, level: level)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = [UInt8](try encoder.encode(manifest))
        var bytes = Checkpoint.magic
        for field in [Checkpoint.formatVersion, UInt32(json.count), Checkpoint.crc32(json)] {
            withUnsafeBytes(of: field.littleEndian) { bytes.append(contentsOf: $0) }
        }
        return bytes + json + frame
    }

    /// Reads the header and manifest only, checking lengths against the data's size.
    public static func manifest(of bytes: [UInt8], source: String) throws -> (CheckpointManifest, payloadStart: Int) {
        func bad(_ why: String) -> EngineError { .invalidCheckpoint("'\(source)' is not a usable checkpoint: \(why)") }
        guard bytes.count >= headerSize else { throw bad("only \(bytes.count) bytes, shorter than the \(headerSize)-byte header") }
        guard Array(bytes[0..<8]) == magic else { throw bad("bad magic (not a swift-cnn-train checkpoint)") }
        let version = UInt32(littleEndianBytes: bytes[8..<12])
        guard readableVersions.contains(version) else {
            throw bad("format version \(version), this build reads versions \(readableVersions.lowerBound)–\(formatVersion)\(version > formatVersion ? " (written by a newer swift-cnn-train)" : "")")
        }
        let manifestLength = Int(UInt32(littleEndianBytes: bytes[12..<16]))
        guard manifestLength <= maximumManifestSize, headerSize + manifestLength <= bytes.count else {
            throw bad("manifest length \(manifestLength) runs past the end of the \(bytes.count)-byte file")
        }
        let json = Array(bytes[headerSize..<(headerSize + manifestLength)])
        guard crc32(json) == UInt32(littleEndianBytes: bytes[16..<20]) else { throw bad("manifest checksum mismatch (the file is corrupt)") }
        let manifest: CheckpointManifest
        do {
            manifest = try JSONDecoder().decode(CheckpointManifest.self, from: Data(json))
        } catch {
            throw bad("the manifest is not valid JSON of the expected form")
        }
        do {
            try manifest.hyperparameters.validate(ranks: 1)
        } catch {
            throw bad("its hyperparameters cannot be right (\(error))")
        }
        if let normalization = manifest.normalization {
            let channels = manifest.inputShape.count == 3 ? manifest.inputShape[0] : 1
            guard normalization.mean.count == channels, normalization.std.count == channels,
                  normalization.mean.allSatisfy(\.isFinite), normalization.std.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw bad("its input normalization is not a finite mean and a positive standard deviation for each of \(channels) channels")
            }
        }
        return (manifest, headerSize + manifestLength)
    }

    /// Decodes and verifies a whole checkpoint; `layout` is the model the manifest names,
    /// built by the caller, against which the tensor table is checked before the payload is
    /// allocated.
    public static func decode(_ bytes: [UInt8], source: String, layout: ParameterLayout) throws -> Checkpoint {
        func bad(_ why: String) -> EngineError { .invalidCheckpoint("'\(source)' is not a usable checkpoint: \(why)") }
        let (manifest, payloadStart) = try Checkpoint.manifest(of: bytes, source: source)
        let expected = tensorTable(layout: layout, optimizer: manifest.hyperparameters.optimizer)
        guard manifest.tensors == expected else {
            let mismatch = zip(manifest.tensors, expected).first { $0 != $1 }
            throw bad("its tensor table does not match model '\(manifest.model)'" + (mismatch.map { ": \($0.name) \($0.shape) at \($0.offset), expected \($1.name) \($1.shape) at \($1.offset)" } ?? " (\(manifest.tensors.count) tensors, expected \(expected.count))"))
        }
        let floats = payloadFloats(layout: layout, optimizer: manifest.hyperparameters.optimizer)
        guard floats <= maximumPayloadFloats else { throw bad("its model has more than \(maximumPayloadFloats) floats of state") }
        guard manifest.payloadFloats == floats else { throw bad("the manifest claims \(manifest.payloadFloats) floats, the model has \(floats)") }
        var payload = try Zstd.decompress(Array(bytes[payloadStart...]), expectedSize: 4 * floats, source: source)
        if manifest.byteShuffled { payload = unshuffled(payload) }
        let digest = SHA256.hash(data: payload).map { String(format: "%02x", $0) }.joined()
        guard digest == manifest.payloadSHA256 else { throw bad("payload checksum mismatch (the file is corrupt)") }
        var values = [Float](repeating: 0, count: floats)
        for i in 0..<floats {
            values[i] = Float(bitPattern: UInt32(littleEndianBytes: payload[(4 * i)..<(4 * i + 4)]))
        }
        let p = layout.parameterCount, b = layout.bufferCount
        var checkpoint = Checkpoint(manifest: manifest, parameters: Array(values[0..<p]), buffers: Array(values[p..<(p + b)]),
                                    optimizerState: Array(values[(p + b)...]))
        checkpoint.fileVersion = UInt32(littleEndianBytes: bytes[8..<12])
        return checkpoint
    }

    /// zlib's CRC-32, as stored in the header for the manifest.
    public static func crc32(_ bytes: [UInt8]) -> UInt32 {
        UInt32(bytes.withUnsafeBufferPointer { CZlib.crc32(0, $0.baseAddress, UInt32($0.count)) })
    }

    static func shuffled(_ bytes: [UInt8]) -> [UInt8] {
        let n = bytes.count / 4
        var out = [UInt8](repeating: 0, count: bytes.count)
        for i in 0..<n { for k in 0..<4 { out[k * n + i] = bytes[4 * i + k] } }
        return out
    }

    static func unshuffled(_ bytes: [UInt8]) -> [UInt8] {
        let n = bytes.count / 4
        var out = [UInt8](repeating: 0, count: bytes.count)
        for i in 0..<n { for k in 0..<4 { out[4 * i + k] = bytes[k * n + i] } }
        return out
    }
}

extension UInt32 {
    init(littleEndianBytes bytes: ArraySlice<UInt8>) {
        self = bytes.reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }
}

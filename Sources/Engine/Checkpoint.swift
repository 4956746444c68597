import Crypto
import CZlib
import CZstd
import Foundation

/// A training state on disk (design §4, `docs/checkpoint-format.md`):
///
///     magic "SCNNCKPT" (8 bytes) | format version UInt32 LE | manifest length UInt32 LE
///     | CRC-32 of the manifest UInt32 LE
///     manifest: UTF-8 JSON (`CheckpointManifest`)
///     payload: one zstd frame (with its content checksum) of every tensor as little-endian
///              Float32 — parameters, then buffers, then momentum — byte-shuffled if the
///              manifest says so.
///
/// Decoding trusts nothing: every length is bounded by the file size, the tensor table is
/// checked against the model the manifest names before the payload is allocated, and both
/// zstd's checksum and the manifest's SHA-256 of the payload are verified.
public struct Checkpoint: Sendable {
    public static let magic = Array("SCNNCKPT".utf8)
    public static let formatVersion: UInt32 = 1
    static let headerSize = 20
    static let maximumManifestSize = 1 << 20
    /// The largest state we load: 2 GiB of floats, far above any model here.
    public static let maximumPayloadFloats = 1 << 29

    public var manifest: CheckpointManifest
    public var parameters: [Float]
    public var buffers: [Float]
    public var velocity: [Float]

    public init(manifest: CheckpointManifest, parameters: [Float], buffers: [Float], velocity: [Float]) {
        self.manifest = manifest
        self.parameters = parameters
        self.buffers = buffers
        self.velocity = velocity
    }

    /// The tensor table of a model's state, in payload order.
    public static func tensorTable(layout: ParameterLayout) -> [CheckpointManifest.Tensor] {
        let parameterCount = layout.parameterCount, bufferCount = layout.bufferCount
        return layout.parameters.map { .init(name: $0.name, shape: $0.shape, offset: $0.offset) }
            + layout.buffers.map { .init(name: $0.name, shape: $0.shape, offset: parameterCount + $0.offset) }
            + layout.parameters.map { .init(name: "momentum." + $0.name, shape: $0.shape, offset: parameterCount + bufferCount + $0.offset) }
    }

    /// The file's bytes. `shuffle` stores byte 0 of every float, then byte 1, … before zstd,
    /// which groups the slowly varying exponent bytes.
    public func encoded(shuffle: Bool = true, level: Int32 = 3) throws -> [UInt8] {
        var payload = [UInt8]()
        payload.reserveCapacity(4 * (parameters.count + buffers.count + velocity.count))
        for array in [parameters, buffers, velocity] {
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
        guard version == formatVersion else {
            throw bad("format version \(version), this build reads version \(formatVersion)\(version > formatVersion ? " (written by a newer swift-cnn-train)" : "")")
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
        return (manifest, headerSize + manifestLength)
    }

    /// Decodes and verifies a whole checkpoint; `layout` is the model the manifest names,
    /// built by the caller, against which the tensor table is checked before the payload is
    /// allocated.
    public static func decode(_ bytes: [UInt8], source: String, layout: ParameterLayout) throws -> Checkpoint {
        func bad(_ why: String) -> EngineError { .invalidCheckpoint("'\(source)' is not a usable checkpoint: \(why)") }
        let (manifest, payloadStart) = try Checkpoint.manifest(of: bytes, source: source)
        let expected = tensorTable(layout: layout)
        guard manifest.tensors == expected else {
            let mismatch = zip(manifest.tensors, expected).first { $0 != $1 }
            throw bad("its tensor table does not match model '\(manifest.model)'" + (mismatch.map { ": \($0.name) \($0.shape) at \($0.offset), expected \($1.name) \($1.shape) at \($1.offset)" } ?? " (\(manifest.tensors.count) tensors, expected \(expected.count))"))
        }
        let floats = 2 * layout.parameterCount + layout.bufferCount
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
        return Checkpoint(manifest: manifest, parameters: Array(values[0..<p]), buffers: Array(values[p..<(p + b)]),
                          velocity: Array(values[(p + b)...]))
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

/// The JSON manifest of a checkpoint.
public struct CheckpointManifest: Codable, Sendable, Equatable {
    public struct Tensor: Codable, Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        /// Offset in floats from the start of the payload.
        public let offset: Int
    }

    public var model: String
    public var inputShape: [Int]
    public var classes: Int
    public var seed: UInt64
    public var batchSize: Int
    public var chunkSize: Int
    public var learningRate: Float
    /// The learning-rate schedule's summary (`LearningRateSchedule.summary`) and the epoch
    /// count it spans (the cosine schedule depends on it).
    public var learningRateSchedule: String
    public var epochs: Int
    public var momentum: Float
    public var weightDecay: Float
    public var nesterov: Bool
    public var batchNormMomentum: Float
    public var batchNormEpsilon: Float
    public var initScheme: String
    /// Global steps completed, and the epoch the next step belongs to.
    public var step: Int
    public var epoch: Int
    public var tensors: [Tensor]
    public var payloadFloats = 0
    public var payloadSHA256 = ""
    public var byteShuffled = true

    public init(model: String, inputShape: [Int], classes: Int, seed: UInt64, batchSize: Int, chunkSize: Int,
                learningRate: Float, learningRateSchedule: String, epochs: Int, momentum: Float, weightDecay: Float, nesterov: Bool, batchNormMomentum: Float,
                batchNormEpsilon: Float, initScheme: String, step: Int, epoch: Int, tensors: [Tensor]) {
        (self.model, self.inputShape, self.classes, self.seed) = (model, inputShape, classes, seed)
        (self.batchSize, self.chunkSize, self.learningRate, self.momentum) = (batchSize, chunkSize, learningRate, momentum)
        (self.learningRateSchedule, self.epochs) = (learningRateSchedule, epochs)
        (self.weightDecay, self.nesterov, self.batchNormMomentum) = (weightDecay, nesterov, batchNormMomentum)
        (self.batchNormEpsilon, self.initScheme, self.step, self.epoch, self.tensors) = (batchNormEpsilon, initScheme, step, epoch, tensors)
    }
}

extension UInt32 {
    init(littleEndianBytes bytes: ArraySlice<UInt8>) {
        self = bytes.reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }
}

/// zstd through libzstd, one frame with its content checksum.
enum Zstd {
    static func compress(_ input: [UInt8], level: Int32) throws -> [UInt8] {
        guard let context = ZSTD_createCCtx() else { throw EngineError.invalidCheckpoint("zstd: out of memory") }
        defer { ZSTD_freeCCtx(context) }
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
        var output = [UInt8](repeating: 0, count: ZSTD_compressBound(input.count))
        let written = input.withUnsafeBytes { src in
            output.withUnsafeMutableBytes { dst in
                ZSTD_compress2(context, dst.baseAddress, dst.count, src.baseAddress, src.count)
            }
        }
        guard ZSTD_isError(written) == 0 else {
            throw EngineError.invalidCheckpoint("zstd compression failed: \(String(cString: ZSTD_getErrorName(written)))")
        }
        return Array(output[0..<written])
    }

    /// Decompresses a buffer that must be exactly one frame of `expectedSize` bytes.
    static func decompress(_ input: [UInt8], expectedSize: Int, source: String) throws -> [UInt8] {
        func bad(_ why: String) -> EngineError { .invalidCheckpoint("'\(source)' is not a usable checkpoint: \(why)") }
        let (contentSize, frameSize) = input.withUnsafeBytes { src in
            (ZSTD_getFrameContentSize(src.baseAddress, src.count), ZSTD_findFrameCompressedSize(src.baseAddress, src.count))
        }
        guard ZSTD_isError(frameSize) == 0 else { throw bad("the zstd frame is truncated or corrupt") }
        guard frameSize == input.count else { throw bad("\(input.count - frameSize) bytes follow the zstd frame") }
        guard contentSize == UInt64(expectedSize) else {
            throw bad("the zstd frame holds \(contentSize == UInt64.max ? "an unknown number of" : String(contentSize)) bytes, expected \(expectedSize)")
        }
        var output = [UInt8](repeating: 0, count: expectedSize)
        let written = input.withUnsafeBytes { src in
            output.withUnsafeMutableBytes { dst in ZSTD_decompress(dst.baseAddress, dst.count, src.baseAddress, src.count) }
        }
        guard ZSTD_isError(written) == 0, written == expectedSize else {
            throw bad("zstd: \(ZSTD_isError(written) != 0 ? String(cString: ZSTD_getErrorName(written)) : "short frame")")
        }
        return output
    }
}

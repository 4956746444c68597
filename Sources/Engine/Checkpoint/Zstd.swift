import Crypto
import CZlib
import CZstd
import Foundation

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

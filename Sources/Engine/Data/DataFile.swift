import CZlib
import Foundation

/// Reads a data file that may be gzip-compressed (zlib's gzread passes plain files through)
/// and checks its size against what a header promises *before* anything large is allocated:
/// a plain file's size on disk, a gzip file's trailer (ISIZE, the size modulo 2³²) and, at
/// the end, that exactly that many bytes came out.
final class DataFile {
    let path: String
    private let file: gzFile
    private let isGzip: Bool
    private let diskSize: Int
    private let gzipTrailerSize: UInt32
    private var consumed = 0

    /// The largest data file we accept (uncompressed): far above CIFAR's and MNIST's, far
    /// below what would exhaust memory.
    static let maximumSize = 4 << 30

    init(path: String) throws {
        self.path = path
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw EngineError.invalidData("cannot open '\(path)'")
        }
        defer { try? handle.close() }
        let end = (try? handle.seekToEnd()) ?? 0
        diskSize = Int(end)
        try? handle.seek(toOffset: 0)
        let magic = (try? handle.read(upToCount: 2)) ?? Data()
        isGzip = magic == Data([0x1F, 0x8B])
        var trailer: UInt32 = 0
        if isGzip {
            guard diskSize >= 18 else { throw EngineError.invalidData("'\(path)' is a truncated gzip file (\(diskSize) bytes)") }
            try? handle.seek(toOffset: UInt64(diskSize - 4))
            let bytes = [UInt8]((try? handle.read(upToCount: 4)) ?? Data())
            guard bytes.count == 4 else { throw EngineError.invalidData("cannot read '\(path)'") }
            trailer = bytes.enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
        }
        gzipTrailerSize = trailer
        guard let file = gzopen(path, "rb") else { throw EngineError.invalidData("cannot open '\(path)'") }
        gzbuffer(file, 1 << 17)
        self.file = file
    }

    deinit { gzclose(file) }

    /// Fails unless the file's whole (uncompressed) content is `expected` bytes long, as far as
    /// can be told without decompressing it.
    func expectTotalSize(_ expected: Int, what: String) throws {
        guard expected <= DataFile.maximumSize else {
            throw EngineError.invalidData("'\(path)': the header claims \(what) of \(expected) bytes, more than the \(DataFile.maximumSize >> 30) GiB limit")
        }
        if isGzip {
            guard UInt32(truncatingIfNeeded: expected) == gzipTrailerSize, expected <= diskSize * 1100 else {
                throw EngineError.invalidData("'\(path)': the header promises \(expected) bytes of \(what) but the gzip stream holds \(gzipTrailerSize) (mod 2^32): truncated or corrupt")
            }
        } else if expected != diskSize {
            throw EngineError.invalidData("'\(path)': the header promises \(expected) bytes of \(what) but the file has \(diskSize)")
        }
    }

    /// The size of a plain file's content, or of a gzip file's as its trailer states (mod 2³²).
    var statedSize: Int { isGzip ? Int(gzipTrailerSize) : diskSize }

    func read(into buffer: UnsafeMutableRawBufferPointer, what: String) throws {
        var done = 0
        while done < buffer.count {
            let want = UInt32(min(buffer.count - done, 1 << 30))
            let got = gzread(file, buffer.baseAddress! + done, want)
            if got < 0 { throw EngineError.invalidData("'\(path)': corrupt compressed data while reading \(what)") }
            if got == 0 {
                throw EngineError.invalidData("'\(path)' is truncated: \(what) ended after \(consumed + done) bytes")
            }
            done += Int(got)
        }
        consumed += done
    }

    func readBytes(_ count: Int, what: String) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try read(into: $0, what: what) }
        return bytes
    }

    /// Fails if anything follows the expected content.
    func expectEnd() throws {
        var byte: UInt8 = 0
        let got = gzread(file, &byte, 1)
        if got < 0 { throw EngineError.invalidData("'\(path)': corrupt compressed data at its end") }
        if got > 0 { throw EngineError.invalidData("'\(path)' has data beyond what its header describes") }
    }
}

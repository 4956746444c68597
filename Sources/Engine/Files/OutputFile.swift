import Foundation

/// A file a command writes, named as the user gave it; `-` is standard output.
///
/// `write` replaces a regular file (or creates a new path) atomically: a temporary file in the
/// same directory, fsync, rename, fsync the directory, so a reader or a crash sees the old bytes
/// or the new ones, never a part. A symlink is followed to its target, which is replaced; the
/// link stays a link. A FIFO, a device (`/dev/null`, `/dev/full`) and standard output are
/// written through: opened for writing, never replaced. `openForAppending` never replaces
/// anything. Every failure is one `EngineError.output` naming the path and the system's reason;
/// a failed `write` leaves no temporary file and the old file as it was.
public struct OutputFile {
    /// The path as given: what messages name.
    public let path: String

    public init(_ path: String) { self.path = path }

    public var isStandardOutput: Bool { path == "-" }

    /// Throws, before anything is written, if the output is the file `input` (the same device
    /// and inode, after following symlinks): "'-o a.scnn' is the checkpoint being read".
    public func refuseToOverwrite(_ input: String, _ role: String, option: String = "-o") throws {
        guard !isStandardOutput, let output = OutputFile.status(path), let read = OutputFile.status(input),
              output.st_dev == read.st_dev, output.st_ino == read.st_ino else { return }
        throw EngineError.output("'\(option) \(path)' is \(role)")
    }

    /// Writes `bytes` as the file's whole content (see the type's rules). When the file is
    /// replaced, `midway` runs once half the bytes are in the temporary file and synced: the
    /// point where tests of interrupted writes hold (docs/reliability.md).
    public func write(_ bytes: [UInt8], midway: () -> Void = {}) throws {
        if isStandardOutput {
            fflush(stdout)  // what print() buffered goes first
            try check(OutputFile.writeAll(bytes[...], to: STDOUT_FILENO))
            return
        }
        let target = try followingSymlinks()
        switch OutputFile.status(target).map({ $0.st_mode & S_IFMT }) {
        case nil, S_IFREG?: try replace(target, with: bytes, midway: midway)
        case S_IFDIR?: throw failure(EISDIR)
        default: try writeThrough(target, bytes)
        }
    }

    /// Opens the file for `Appender.append`, creating it if it does not exist.
    public func openForAppending() throws -> Appender {
        if isStandardOutput { return Appender(output: self, descriptor: STDOUT_FILENO) }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw failure(errno) }
        return Appender(output: self, descriptor: fd)
    }

    /// An open output that each call extends, as a log is.
    public final class Appender {
        let output: OutputFile
        let descriptor: Int32

        init(output: OutputFile, descriptor: Int32) {
            self.output = output
            self.descriptor = descriptor
        }

        deinit { if descriptor != STDOUT_FILENO { close(descriptor) } }

        /// Appends `bytes`. If they do not all fit (a full disk), a regular file is cut back to
        /// its old end, so that it holds whole records only; devices and FIFOs refuse the cut,
        /// harmlessly.
        public func append(_ bytes: [UInt8]) throws {
            let end = lseek(descriptor, 0, SEEK_END)
            guard let error = OutputFile.writeAll(bytes[...], to: descriptor) else { return }
            if end >= 0 { _ = ftruncate(descriptor, end) }
            throw output.failure(error)
        }
    }

    /// Opens `target` (a FIFO, which waits for its reader, or a device) and writes to it.
    func writeThrough(_ target: String, _ bytes: [UInt8]) throws {
        let fd = open(target, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(errno) }
        let writeError = OutputFile.writeAll(bytes[...], to: fd)
        let closeError = close(fd) == 0 ? nil : errno
        try check(writeError ?? closeError)
    }

    /// Writes a temporary file beside `target` and renames it over `target`.
    func replace(_ target: String, with bytes: [UInt8], midway: () -> Void) throws {
        let temporary = "\(target).\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw failure(errno) }
        let half = bytes.count / 2
        var error = OutputFile.writeAll(bytes[..<half], to: fd)
        if error == nil, fsync(fd) != 0 { error = errno }
        midway()
        if error == nil { error = OutputFile.writeAll(bytes[half...], to: fd) }
        // A replaced file keeps its permissions.
        if error == nil, let old = OutputFile.status(target), fchmod(fd, old.st_mode & 0o7777) != 0 { error = errno }
        if error == nil, fsync(fd) != 0 { error = errno }
        if close(fd) != 0, error == nil { error = errno }
        if error == nil, rename(temporary, target) != 0 { error = errno }
        if let error {
            unlink(temporary)
            throw failure(error)
        }
        // The rename is done; a directory that cannot be synced (some file systems refuse) is
        // no reason to report a failure.
        let directory = (target as NSString).deletingLastPathComponent
        let dirfd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_CLOEXEC)
        if dirfd >= 0 {
            fsync(dirfd)
            close(dirfd)
        }
    }

    /// The path with every symlink at its end followed; a dangling link gives its missing
    /// target, which is then created.
    func followingSymlinks() throws -> String {
        var current = path
        for _ in 0..<40 {  // Linux's own limit before ELOOP
            var info = stat()
            guard lstat(current, &info) == 0, info.st_mode & S_IFMT == S_IFLNK else { return current }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let length = readlink(current, &buffer, buffer.count - 1)
            guard length >= 0 else { throw failure(errno) }
            let target = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let directory = (current as NSString).deletingLastPathComponent
            current = target.hasPrefix("/") || directory.isEmpty ? target : directory + "/" + target
        }
        throw failure(ELOOP)
    }

    /// `stat` (following symlinks), or nil if there is nothing there.
    static func status(_ path: String) -> stat? {
        var info = stat()
        return stat(path, &info) == 0 ? info : nil
    }

    /// Writes every byte, retrying after signals and short writes; returns errno on failure.
    static func writeAll(_ bytes: ArraySlice<UInt8>, to fd: Int32) -> Int32? {
        bytes.withUnsafeBytes { raw -> Int32? in
            var written = 0
            while written < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                written += n
            }
            return nil
        }
    }

    func failure(_ error: Int32) -> EngineError {
        EngineError.output("cannot write \(isStandardOutput ? "standard output" : "'\(path)'"): \(String(cString: strerror(error)))")
    }

    func check(_ error: Int32?) throws {
        if let error { throw failure(error) }
    }
}

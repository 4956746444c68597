import CZlib
import Engine
import Foundation

/// The files the file-reading targets go through: the fuzzed file and the valid partners it
/// is paired with, in a directory of this process's own; in memory (/dev/shm) where there is
/// one, since every execution writes a file.
enum ScratchFiles {
    static let directory = (FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm/" : NSTemporaryDirectory())
        + "fuzz-parsers-\(getpid())"
    static let candidate = directory + "/candidate"
    /// Two 2×2 images and their two labels.
    static let validImages = directory + "/images", validLabels = directory + "/labels"

    static let setUp: Void = {
        try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: ScratchFiles.directory) }
        try! Data([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]).write(to: URL(fileURLWithPath: validImages))
        try! Data([0, 0, 8, 1, 0, 0, 0, 2, 1, 0]).write(to: URL(fileURLWithPath: validLabels))
    }()

    static func write(_ bytes: [UInt8]) {
        _ = setUp
        try! Data(bytes).write(to: URL(fileURLWithPath: candidate))
    }

    static func writeGzip(_ bytes: [UInt8]) {
        _ = setUp
        guard let file = gzopen(candidate, "wb") else { preconditionFailure("cannot write \(candidate)") }
        let written = bytes.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }
        precondition(gzclose(file) == Z_OK && written == bytes.count, "cannot write \(candidate)")
    }

    /// Reads the candidate as the images, then as the labels, of a data set.
    static func loadIDX() {
        _ = try? IDX.load(images: candidate, labels: validLabels, name: "fuzz", classes: 10)
        _ = try? IDX.load(images: validImages, labels: candidate, name: "fuzz", classes: 10)
    }
}

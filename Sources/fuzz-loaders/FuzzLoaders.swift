import DistributedTraining
import Engine
import Foundation

/// Fuzz target for everything that parses untrusted files: the checkpoint loader and the IDX
/// data loader (plain and gzip). Built by `scripts/fuzz` with `-sanitize=fuzzer -D FUZZING`
/// (libFuzzer supplies main); a normal build makes a replayer that runs files given as
/// arguments through the same code, so a crash the fuzzer finds becomes a reproducible case.
enum FuzzLoaders {
    static let directory = NSTemporaryDirectory() + "fuzz-loaders-\(getpid())"
    static let validImages = directory + "/images", validLabels = directory + "/labels"
    static let candidate = directory + "/candidate"

    static let setUp: Void = {
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // Two 2×2 images and their labels: the partners of a fuzzed file.
        _ = FileManager.default.createFile(atPath: validImages, contents: Data([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]))
        _ = FileManager.default.createFile(atPath: validLabels, contents: Data([0, 0, 8, 1, 0, 0, 0, 2, 1, 0]))
    }()

    /// Every loader must either succeed or throw; a crash, hang or huge allocation is a bug.
    static func run(_ bytes: [UInt8]) {
        _ = setUp
        _ = try? loadCheckpoint(bytes: bytes, source: "fuzz input")
        _ = FileManager.default.createFile(atPath: candidate, contents: Data(bytes))
        _ = try? IDX.load(images: candidate, labels: validLabels, name: "fuzz", classes: 10)
        _ = try? IDX.load(images: validImages, labels: candidate, name: "fuzz", classes: 10)
    }
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FuzzLoaders.run(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

/// SwiftPM links an executable's entry point under this name; hand over to libFuzzer's driver.
@_cdecl("fuzz_loaders_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments) { data, size in fuzzTestOneInput(data, size) }
}
#else
@main
struct FuzzReplay {
    static func main() {
        let paths = CommandLine.arguments.dropFirst()
        for path in paths {
            guard let data = FileManager.default.contents(atPath: path) else {
                print("cannot read \(path)")
                exit(1)
            }
            FuzzLoaders.run([UInt8](data))
        }
        print("replayed \(paths.count) inputs without a crash")
    }
}
#endif

import Foundation

/// Built by `scripts/fuzz` with `-sanitize=fuzzer,address -D FUZZING`: libFuzzer's driver
/// runs the target named by the first argument, `fuzz-parsers TARGET [libFuzzer options]
/// [CORPUS…]`. A plain build is the replayer, `fuzz-parsers TARGET FILE|DIRECTORY…`, which
/// runs files through the same code, so a crash the fuzzer finds becomes a reproducible case.
let usage = "usage: fuzz-parsers TARGET … (targets: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")))"

#if FUZZING
/// The target the driver's callback runs (a C callback captures nothing).
nonisolated(unsafe) var selectedTarget = FuzzTarget.checkpoint

@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// SwiftPM links an executable's entry point under this name; take the target's name off the
/// arguments and hand the rest to libFuzzer's driver.
@_cdecl("fuzz_parsers_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var arguments = Array(UnsafeBufferPointer(start: argv, count: Int(argc)))
    guard arguments.count >= 2, let name = arguments[1].map({ String(cString: $0) }), let target = FuzzTarget(rawValue: name) else {
        fputs(usage + "\n", stderr)
        return 2
    }
    selectedTarget = target
    arguments.remove(at: 1)
    var count = CInt(arguments.count)
    arguments.append(nil)
    return arguments.withUnsafeMutableBufferPointer { buffer in
        var pointer = buffer.baseAddress
        return runFuzzerDriver(&count, &pointer) { data, size in
            selectedTarget.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
            return 0
        }
    }
}
#else
@main
struct FuzzReplay {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        guard arguments.count >= 2, let target = FuzzTarget(rawValue: arguments.first!) else {
            fputs(usage + "\n", stderr)
            exit(2)
        }
        var replayed = 0
        for path in arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                fputs("error: no file or directory '\(path)'\n", stderr)
                exit(1)
            }
            let files = isDirectory.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 }
                : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else {
                    fputs("error: cannot read '\(file)'\n", stderr)
                    exit(1)
                }
                target.run([UInt8](data))
                replayed += 1
            }
        }
        print("\(target.rawValue): replayed \(replayed) inputs without a crash")
    }
}
#endif

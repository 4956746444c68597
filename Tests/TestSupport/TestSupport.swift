import Engine
import Foundation

/// Helpers shared by every test target (one target, not copied into each test file).
public enum TestSupport {
    /// The package's root directory.
    public static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The release binary `scripts/setup` builds (or `$SWIFT_CNN_TRAIN_BINARY`).
    public static var binary: String {
        ProcessInfo.processInfo.environment["SWIFT_CNN_TRAIN_BINARY"]
            ?? packageRoot.appendingPathComponent(".build/release/swift-cnn-train").path
    }

    public static let fixtureDirectory = packageRoot.appendingPathComponent("Tests/EngineTests/Fixtures")

    /// A fresh empty directory under the system's temporary directory.
    public static func temporaryDirectory(_ label: String = "test") -> String {
        let path = NSTemporaryDirectory() + "swift-cnn-train-\(label)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

/// The bytes of MNIST-format IDX files, for tests that make their own data sets.
public enum IDXFile {
    static func bigEndian(_ value: Int) -> [UInt8] { (0..<4).map { UInt8((value >> (8 * (3 - $0))) & 0xFF) } }

    public static func images(count: Int, rows: Int, cols: Int, pixels: [UInt8]) -> [UInt8] {
        [0, 0, 8, 3] + bigEndian(count) + bigEndian(rows) + bigEndian(cols) + pixels
    }

    public static func labels(_ labels: [UInt8]) -> [UInt8] { [0, 0, 8, 1] + bigEndian(labels.count) + labels }

    /// A directory of the four files of a data set of `train` and `test` random 28×28 images
    /// with the given labels.
    public static func dataSet(trainLabels: [UInt8], testLabels: [UInt8]) throws -> String {
        let directory = TestSupport.temporaryDirectory("idx")
        for (stem, labels) in [("train", trainLabels), ("t10k", testLabels)] {
            let pixels = (0..<(labels.count * 784)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
            try Data(images(count: labels.count, rows: 28, cols: 28, pixels: pixels))
                .write(to: URL(fileURLWithPath: "\(directory)/\(stem)-images-idx3-ubyte"))
            try Data(self.labels(labels)).write(to: URL(fileURLWithPath: "\(directory)/\(stem)-labels-idx1-ubyte"))
        }
        return directory
    }
}

/// The outcome of running a command.
public struct CommandResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public let seconds: Double
    /// True if the process ended by a signal rather than exiting.
    public let signaled: Bool

    /// Standard error's lines without the ones ArgumentParser adds after its one error line
    /// (the flag's help, the usage, where to see more).
    public var errorLines: [Substring] {
        stderr.split(separator: "\n").filter { !$0.hasPrefix("Help:") && !$0.hasPrefix("Usage:") && !$0.hasPrefix("  See") }
    }

    /// The hex digest from the `parameter digest: …` line, if any.
    public var digest: String? {
        stdout.split(separator: "\n").last { $0.hasPrefix("parameter digest: ") }.map { String($0.dropFirst(18)) }
    }
}

/// Runs the swift-cnn-train binary as a user would: alone, or under `mpirun -n ranks`.
public func runTrainer(_ arguments: [String], ranks: Int? = nil, timeout: Double = 600,
                       environment: [String: String] = [:], onStart: ((Process) -> Void)? = nil) throws -> CommandResult {
    if let ranks {
        return try runCommand("/usr/bin/mpirun", ["-n", "\(ranks)", "--oversubscribe", TestSupport.binary] + arguments,
                              timeout: timeout, environment: environment, onStart: onStart)
    }
    return try runCommand(TestSupport.binary, arguments, timeout: timeout, environment: environment, onStart: onStart)
}

/// Runs a command to completion (killing it after `timeout` seconds), capturing its output.
public func runCommand(_ executable: String, _ arguments: [String], timeout: Double = 600,
                       environment: [String: String] = [:], onStart: ((Process) -> Void)? = nil) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    // What Open MPI needs here (scripts/mpi-env sets the same for users).
    env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    for (k, v) in environment { env[k] = v }
    process.environment = env
    let outFile = TestSupport.temporaryDirectory("out") + "/out"
    _ = FileManager.default.createFile(atPath: outFile, contents: nil)
    _ = FileManager.default.createFile(atPath: outFile + ".err", contents: nil)
    let out = FileHandle(forWritingAtPath: outFile)!, err = FileHandle(forWritingAtPath: outFile + ".err")!
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    let start = Date()
    try process.run()
    onStart?(process)
    let deadline = start.addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(20_000) }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
    process.waitUntilExit()
    try? out.close()
    try? err.close()
    let stdout = (try? String(contentsOfFile: outFile, encoding: .utf8)) ?? ""
    let stderr = (try? String(contentsOfFile: outFile + ".err", encoding: .utf8)) ?? ""
    return CommandResult(status: process.terminationStatus, stdout: stdout, stderr: stderr,
                         seconds: Date().timeIntervalSince(start), signaled: process.terminationReason == .uncaughtSignal)
}

/// A reference tensor written by `scripts/make-fixtures` (PyTorch).
public struct FixtureTensor: Decodable, Sendable {
    public let shape: [Int]
    public let data: [Float]
    /// When set, `data` holds only elements 0, stride, 2·stride, … of the flat tensor.
    public let stride: Int?
}

/// One fixture file: the PyTorch call and its tensors.
public struct Fixture: Decodable, Sendable {
    public let call: String
    public let tensors: [String: FixtureTensor]

    public static func load(_ name: String) throws -> Fixture {
        let data = try Data(contentsOf: TestSupport.fixtureDirectory.appendingPathComponent("\(name).json"))
        return try JSONDecoder().decode(Fixture.self, from: data)
    }

    public subscript(_ name: String) -> FixtureTensor {
        guard let t = tensors[name] else { fatalError("fixture has no tensor '\(name)'") }
        return t
    }
}

/// Runs layers outside a trainer: one communicator of one, exact reduction, any chunking.
public final class LayerHarness {
    public let network: Network?
    public var parameters: [Float]
    public var buffers: [Float]
    public let reducer = ExactReducer(communicator: SerialCommunicator())
    public let executor: ParallelExecutor

    public init(parameterCount: Int, bufferCount: Int, threads: Int = 1) {
        network = nil
        parameters = [Float](repeating: 0, count: parameterCount)
        buffers = [Float](repeating: 0, count: max(bufferCount, 1))
        executor = ParallelExecutor(threads: threads)
    }

    /// Forward then backward of one layer over `samples` samples in chunks of `chunkSize`.
    /// Returns y, dx and the parameter gradients summed over chunks (exactly).
    public func run(_ layer: Layer, x: [Float], dy: [Float], samples: Int, chunkSize: Int? = nil,
                    training: Bool = true, hyper: LayerHyperparameters = LayerHyperparameters()) throws
        -> (y: [Float], dx: [Float], gradients: [Float]) {
        let chunk = chunkSize ?? samples
        let chunks = (samples + chunk - 1) / chunk
        let p = parameters.count
        var y = [Float](repeating: 0, count: samples * layer.outputSize)
        var dx = [Float](repeating: 0, count: samples * layer.inputSize)
        var chunkGradients = [Float](repeating: 0, count: max(chunks * p, 1))
        var gradients = [Float](repeating: 0, count: max(p, 1))
        try parameters.withUnsafeMutableBufferPointer { params in
            try buffers.withUnsafeMutableBufferPointer { bufs in
                try chunkGradients.withUnsafeMutableBufferPointer { grads in
                    let pass = Pass(samples: .init(count: samples, chunkSize: chunk, globalCount: samples),
                                    state: .init(parameters: params.baseAddress!, buffers: bufs.baseAddress!, chunkGradients: grads.baseAddress!,
                                                 parameterCount: p),
                                    training: training, executor: executor, reducer: reducer, hyper: hyper)
                    // The input outlives backward: Linear keeps a pointer to it for the reduction.
                    try x.withUnsafeBufferPointer { xs in
                        try layer.forward(&y, xs.baseAddress!, pass)
                        try layer.backward(&dx, dy, xs.baseAddress!, &y, pass)
                        // A deferred tensor is its own segment, as in the trainer (which reduces per tensor).
                        var tensors = [0..<p]
                        if let deferring = layer as? DeferredGradients {
                            let d = deferring.deferredRange
                            tensors = [0..<d.lowerBound, d, d.upperBound..<p].filter { !$0.isEmpty }
                        }
                        if p > 0 {
                            try reducer.sumChunks(GradientPartials(pass: pass, layers: [layer]), rows: chunks,
                                                  segments: tensors.map { SumSegment(name: "gradients", range: $0) },
                                                  into: &gradients)
                        }
                    }
                }
            }
        }
        return (y, dx, Array(gradients.prefix(p)))
    }
}

extension ParameterLayout {
    /// The tensor named `name` (a test's typo stops it at once).
    public func tensor(_ name: String) -> TensorInfo {
        guard let t = tensors.first(where: { $0.name == name }) else {
            fatalError("no tensor '\(name)' in \(tensors.map(\.name))")
        }
        return t
    }
}

/// A checkpoint's parameters and buffers by tensor name (momentum left out), after the full
/// verification `loadCheckpoint` does: for tests of what a command wrote from a checkpoint.
public func checkpointState(path: String) throws -> (step: Int, tensors: [String: (shape: [Int], values: [Float])]) {
    let (checkpoint, network) = try loadCheckpoint(path: path)
    var tensors: [String: (shape: [Int], values: [Float])] = [:]
    for tensor in network.layout.tensors {
        let source = tensor.kind == .parameter ? checkpoint.parameters : checkpoint.buffers
        tensors[tensor.name] = (tensor.shape, Array(source[tensor.range]))
    }
    return (checkpoint.manifest.step, tensors)
}

/// A run asked to hold at an exact point of its progress (`SWIFT_CNN_TRAIN_HOLD`, see
/// `TestHold`): a test interrupts it there, whatever the speed of the machine, and knows the
/// point was reached.
public struct Hold: Sendable {
    /// The hold's environment, for the run (and its job, under mpirun or Slurm).
    public let environment: [String: String]
    private let marker: String

    /// Holds at `point` ("step": every rank after step `step`; "write": rank 0 halfway
    /// through writing step `step`'s checkpoint).
    public init(_ point: String, step: Int) {
        marker = TestSupport.temporaryDirectory("hold") + "/held"
        environment = ["SWIFT_CNN_TRAIN_HOLD": "\(point):\(step)", "SWIFT_CNN_TRAIN_HOLD_FILE": marker]
    }

    /// The process ids of the `ranks` ranks once all of them hold, or nil if `isRunning` turns
    /// false first. `timeout` only guards against a hung run; it decides nothing.
    public func waitForRanks(_ ranks: Int, timeout: Double = 600, isRunning: () -> Bool) -> [pid_t]? {
        let deadline = Date().addingTimeInterval(timeout)
        // The markers every 10 ms; `isRunning` (which may start a process) every half second.
        for poll in 0... where Date() < deadline {
            let pids = (0..<ranks).compactMap { rank in
                (try? String(contentsOfFile: "\(marker).\(rank)", encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            }
            if pids.count == ranks { return pids }
            if poll % 50 == 0, !isRunning() { return nil }
            usleep(10_000)
        }
        return nil
    }

    /// From another thread: once the `ranks` ranks of `process`'s run hold, calls `action`
    /// with their process ids (never, if the run ends first).
    public func onceHeld(_ process: Process, ranks: Int = 1, _ action: @escaping @Sendable ([pid_t]) -> Void) {
        DispatchQueue.global().async {
            if let pids = waitForRanks(ranks, isRunning: { process.isRunning }) { action(pids) }
        }
    }
}

import Foundation
import TestSupport
import XCTest

/// The job scripts in `cluster/` run through a real single-node Slurm (`scripts/local-slurm`)
/// and end with the serial run's weights, also across a requeue; a run across network
/// namespace hosts (`scripts/local-hosts`) talks real TCP, gives the serial weights, and ends
/// promptly when a link is cut or a rank is killed. Both need root, as CI has.
enum Cluster {
    static let common = ["train", "--model", "seed-cnn-bn", "--data", "synthetic:960:96", "--batch-size", "48",
                         "--chunk-size", "8", "--seed", "3"]
    /// What the job scripts take: the trainer's arguments after `train`.
    static func jobArguments(_ arguments: [String]) -> [String] { Array(arguments.dropFirst()) }

    static func script(_ path: String) -> String { TestSupport.packageRoot.appendingPathComponent(path).path }

    /// The serial run's digest for `arguments` (computed once per argument list).
    static func reference(_ arguments: [String]) throws -> String {
        if let known = references[arguments] { return known }
        let result = try runTrainer(arguments, timeout: 300)
        guard result.status == 0, let digest = result.digest else { throw ClusterTestError("serial run failed: \(result.stderr)") }
        references[arguments] = digest
        return digest
    }
    private static var references: [[String]: String] = [:]

    /// Runs a short command and returns its status and standard output (for polling).
    static func capture(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return (-1, "") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Polls `condition` every 0.1 s for up to `seconds`; returns whether it became true.
    @discardableResult
    static func wait(upTo seconds: Double, until condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(100_000)
        }
        return condition()
    }

    /// Lines in a metrics file: a second one means training is under way.
    static func metricsLines(_ path: String) -> Int {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    static func lastDigest(_ log: String) -> String? {
        log.split(separator: "\n").last { $0.hasPrefix("parameter digest: ") }.map { String($0.dropFirst(18)) }
    }
}

struct ClusterTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// `cluster/train.sbatch` and `cluster/train-mpirun.sbatch` through a real Slurm.
final class SlurmTests: XCTestCase {
    static let directory = TestSupport.temporaryDirectory("slurm")
    static var environment: [String: String] {
        ["LOCAL_SLURM_DIR": directory, "SLURM_CONF": directory + "/slurm.conf", "SWIFT_CNN_TRAIN": TestSupport.binary]
    }
    static var startFailure: String?

    override class func setUp() {
        super.setUp()
        guard getuid() == 0 else { return }
        do {
            let result = try runCommand(Cluster.script("scripts/local-slurm"), ["start"], timeout: 600, environment: environment)
            if result.status != 0 { startFailure = "scripts/local-slurm start failed: \(result.stderr)" }
        } catch {
            startFailure = "scripts/local-slurm start failed: \(error)"
        }
    }

    override class func tearDown() {
        if getuid() == 0 { _ = try? runCommand(Cluster.script("scripts/local-slurm"), ["stop"], timeout: 120, environment: environment) }
        super.tearDown()
    }

    override func setUpWithError() throws {
        guard getuid() == 0 else {
            throw XCTSkip("needs root: scripts/local-slurm installs Slurm with apt and runs slurmctld and slurmd with SlurmUser=root")
        }
        if let failure = Self.startFailure { throw ClusterTestError(failure) }
    }

    /// Submits `script` with `tasks` tasks in `directory` and returns the job id; the job
    /// inherits `environment` (sbatch exports the submitter's environment).
    func submit(_ script: String, tasks: Int, _ arguments: [String], in directory: String,
                environment: [String: String] = [:]) throws -> String {
        let result = try runCommand("/usr/bin/sbatch", ["--parsable", "-n", "\(tasks)", "-D", directory,
                                                        Cluster.script("cluster/\(script)")] + Cluster.jobArguments(arguments),
                                    timeout: 60, environment: Self.environment.merging(environment) { $1 })
        guard result.status == 0, let id = result.stdout.split(separator: ";").first?.trimmingCharacters(in: .whitespacesAndNewlines),
              !id.isEmpty else { throw ClusterTestError("sbatch failed: \(result.stderr)") }
        return id
    }

    /// `scontrol show job` for `id`, as key=value pairs.
    func job(_ id: String) -> [String: String] {
        let text = Cluster.capture("/usr/bin/scontrol", ["show", "job", "-o", id], environment: Self.environment).output
        var fields: [String: String] = [:]
        for pair in text.split(whereSeparator: \.isWhitespace) {
            guard let eq = pair.firstIndex(of: "=") else { continue }
            fields[String(pair[..<eq])] = String(pair[pair.index(after: eq)...])
        }
        return fields
    }

    /// True once job `id` has left the queue (finished, failed or cancelled).
    func hasEnded(_ id: String) -> Bool {
        let queued = Cluster.capture("/usr/bin/squeue", ["-h", "-j", id, "-o", "%T"], environment: Self.environment)
        return queued.status == 0 && queued.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
    }

    /// Waits for job `id` to leave the queue; returns its final state.
    func waitForJob(_ id: String, timeout: Double) -> String? {
        let done = Cluster.wait(upTo: timeout) { hasEnded(id) }
        if !done { _ = Cluster.capture("/usr/bin/scancel", [id], environment: Self.environment) }
        return done ? job(id)["JobState"] : nil
    }

    func output(of id: String, in directory: String) -> String {
        (try? String(contentsOfFile: "\(directory)/swift-cnn-train-\(id).out", encoding: .utf8)) ?? ""
    }

    func requirePMIx() throws {
        let list = Cluster.capture("/usr/bin/srun", ["--mpi=list"], environment: Self.environment)
        guard list.output.contains("pmix") else {
            throw XCTSkip("Slurm's srun has no PMIx plugin here (srun --mpi=list: \(list.output)), so train.sbatch cannot launch Open MPI ranks")
        }
    }

    /// Runs `script` as a two-task job of 30 steps and checks that it completes on 2 ranks with
    /// the serial run's digest; returns the job's id, directory and log.
    func assertTwoTaskJobEndsWithTheSerialDigest(_ script: String, label: String,
                                                 file: StaticString = #filePath, line: UInt = #line) throws
        -> (id: String, directory: String, log: String) {
        let arguments = Cluster.common + ["--max-steps", "30"]
        let reference = try Cluster.reference(arguments)
        let directory = TestSupport.temporaryDirectory(label)
        let id = try submit(script, tasks: 2, arguments, in: directory)
        let state = waitForJob(id, timeout: 180)
        let log = output(of: id, in: directory)
        XCTAssertEqual(state, "COMPLETED", log, file: file, line: line)
        XCTAssertTrue(log.contains("2 ranks"), log, file: file, line: line)
        XCTAssertEqual(Cluster.lastDigest(log), reference, log, file: file, line: line)
        return (id, directory, log)
    }

    func testTrainSbatchWithTwoTasksEndsWithTheSerialDigest() throws {
        try requirePMIx()
        let (id, directory, log) = try assertTwoTaskJobEndsWithTheSerialDigest("train.sbatch", label: "sbatch")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(directory)/checkpoints/\(id)/checkpoint-000000030.scnn"), log)
    }

    func testTrainMpirunSbatchWithTwoTasksEndsWithTheSerialDigest() throws {
        _ = try assertTwoTaskJobEndsWithTheSerialDigest("train-mpirun.sbatch", label: "sbatch-mpirun")
    }

    /// `scontrol requeue` of a running job: Slurm sends SIGTERM, rank 0 writes a checkpoint,
    /// the job runs again, resumes and ends with the uninterrupted run's weights.
    func testScontrolRequeueCheckpointsResumesAndEndsWithTheUninterruptedDigest() throws {
        try requirePMIx()
        let arguments = Cluster.common + ["--epochs", "2"]
        let reference = try Cluster.reference(arguments)
        let directory = TestSupport.temporaryDirectory("requeue")
        // Both tasks hold after step 10 until Slurm's SIGTERM: the job is mid-run when it is
        // requeued, however fast the machine. The second run resumes past step 10 and never holds.
        let hold = Hold("step", step: 10)
        let id = try submit("train.sbatch", tasks: 2, arguments, in: directory, environment: hold.environment)
        guard hold.waitForRanks(2, isRunning: { !hasEnded(id) }) != nil else {
            return XCTFail("the job never reached step 10: \(output(of: id, in: directory))")
        }
        let requeue = Cluster.capture("/usr/bin/scontrol", ["requeue", id], environment: Self.environment)
        XCTAssertEqual(requeue.status, 0, "scontrol requeue failed")
        let state = waitForJob(id, timeout: 300)
        let log = output(of: id, in: directory)
        XCTAssertEqual(state, "COMPLETED", log)
        XCTAssertEqual(job(id)["Restarts"], "1", log)
        XCTAssertTrue(log.contains("stopped by SIGTERM after step 11"), log)
        XCTAssertTrue(log.contains("(start 2)"), log)
        XCTAssertTrue(log.contains("resumed from \(directory)/checkpoints/\(id)/checkpoint-000000011.scnn at step 11"), log)
        XCTAssertEqual(log.components(separatedBy: "parameter digest:").count - 1, 1, "the first run should not have finished: \(log)")
        XCTAssertEqual(Cluster.lastDigest(log), reference, log)
    }
}

/// Two hosts as network namespaces joined by veth, Open MPI across them over TCP.
final class MultiHostTests: XCTestCase {
    let directory = TestSupport.temporaryDirectory("hosts")
    let prefix = "scnt\(getpid())"
    var environment: [String: String] { ["LOCAL_HOSTS_DIR": directory, "LOCAL_HOSTS_PREFIX": prefix] }

    override func setUpWithError() throws {
        guard getuid() == 0 else {
            throw XCTSkip("needs root: scripts/local-hosts creates network namespaces and veth links (CAP_NET_ADMIN)")
        }
        let result = try runCommand(Cluster.script("scripts/local-hosts"), ["start", "2"], timeout: 60, environment: environment)
        guard result.status == 0 else { throw ClusterTestError("scripts/local-hosts start failed: \(result.stderr)") }
    }

    override func tearDown() {
        if getuid() == 0 { _ = try? runCommand(Cluster.script("scripts/local-hosts"), ["stop"], timeout: 60, environment: environment) }
        super.tearDown()
    }

    /// `scripts/local-hosts mpirun -n 2 …`: mpirun on h1, one rank per host.
    func runAcrossHosts(_ command: [String], timeout: Double, onStart: ((Process) -> Void)? = nil) throws -> CommandResult {
        try runCommand(Cluster.script("scripts/local-hosts"), ["mpirun", "-n", "2"] + command, timeout: timeout,
                       environment: environment, onStart: onStart)
    }

    /// PIDs of the trainer's processes on host `host` (h1, h2).
    func trainerProcesses(on host: String) -> [pid_t] {
        Cluster.capture("/usr/sbin/ip", ["netns", "pids", "\(prefix)-\(host)"]).output.split(separator: "\n").compactMap { line in
            guard let pid = pid_t(line.trimmingCharacters(in: .whitespaces)),
                  let name = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8),
                  name.hasPrefix("swift-cnn-train") else { return nil }
            return pid
        }
    }

    func testTwoHostsOverTCPGiveTheSerialDigest() throws {
        let placement = try runAcrossHosts(["/bin/sh", "-c", "echo $OMPI_COMM_WORLD_RANK $(ip netns identify $$)"], timeout: 60)
        XCTAssertEqual(placement.status, 0, placement.stderr)
        XCTAssertEqual(placement.stdout.split(separator: "\n").sorted(), ["0 \(prefix)-h1", "1 \(prefix)-h2"], placement.stdout)

        let arguments = Cluster.common + ["--max-steps", "30"]
        let reference = try Cluster.reference(arguments)
        let run = try runAcrossHosts([TestSupport.binary] + arguments, timeout: 180)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.digest, reference, run.stdout + run.stderr)
    }

    /// With h2's link down, TCP would block the collective for many minutes; the watchdog
    /// ends each rank on both sides of the cut with an error naming the step.
    func testCutLinkEndsEveryRankWithinTheWatchdogBound() throws {
        let timeout = 5.0
        let metrics = directory + "/metrics.jsonl"
        // Each rank's exit status, the time it ended and its stderr, in the shared file system.
        let wrapper = directory + "/rank.sh"
        try """
        #!/bin/sh
        "$@" 2>"\(directory)/rank-$OMPI_COMM_WORLD_RANK.err"
        echo "$? $(date +%s.%N)" >"\(directory)/rank-$OMPI_COMM_WORLD_RANK.status"
        """.write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
        let statusFiles = (0..<2).map { "\(directory)/rank-\($0).status" }
        let cutTime = Atomic()
        let arguments = Cluster.common + ["--epochs", "100", "--collective-timeout", "5", "--metrics", metrics]
        let run = try runAcrossHosts([wrapper, TestSupport.binary] + arguments, timeout: 180) { process in
            DispatchQueue.global().async { [self] in
                Cluster.wait(upTo: 60) { Cluster.metricsLines(metrics) >= 2 }
                cutTime.set(Date().timeIntervalSince1970)
                _ = Cluster.capture(Cluster.script("scripts/local-hosts"), ["cut", "h2"], environment: environment)
                Cluster.wait(upTo: timeout + 30) { statusFiles.allSatisfy { FileManager.default.fileExists(atPath: $0) } }
                // mpirun cannot reach h2's daemon to tell it the job is over, so it would wait
                // for TCP to give up; the ranks are what the watchdog bounds.
                kill(process.processIdentifier, SIGKILL)
            }
        }
        XCTAssertGreaterThan(cutTime.value, 0, "the link was never cut")
        for rank in 0..<2 {
            let status = (try? String(contentsOfFile: statusFiles[rank], encoding: .utf8))?.split(separator: " ") ?? []
            let stderr = (try? String(contentsOfFile: "\(directory)/rank-\(rank).err", encoding: .utf8)) ?? ""
            guard status.count == 2, let ended = Double(status[1].trimmingCharacters(in: .whitespacesAndNewlines)) else {
                XCTFail("rank \(rank) did not end: \(run.stdout) \(run.stderr)")
                continue
            }
            XCTAssertEqual(status[0], "1", "rank \(rank): \(stderr)")
            let afterCut = ended - cutTime.value
            XCTAssertLessThan(afterCut, timeout + 3, "rank \(rank) ended \(afterCut) s after the cut")
            XCTAssertTrue(stderr.contains("no progress from the other ranks for 5 s at step"), "rank \(rank): \(stderr)")
            print("link cut: rank \(rank) exited 1 after \(String(format: "%.2f", afterCut)) s: \(stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    func testSIGKILLOfOneRankEndsTheJobWithinTenSeconds() throws {
        let metrics = directory + "/metrics.jsonl"
        let killTime = Atomic()
        let run = try runAcrossHosts([TestSupport.binary] + Cluster.common + ["--epochs", "100", "--metrics", metrics],
                                     timeout: 120) { process in
            DispatchQueue.global().async { [self] in
                Cluster.wait(upTo: 60) { Cluster.metricsLines(metrics) >= 2 }
                guard let victim = trainerProcesses(on: "h2").first else { return }
                killTime.set(Date().timeIntervalSince1970)
                kill(victim, SIGKILL)
            }
        }
        let ended = Date().timeIntervalSince1970
        XCTAssertGreaterThan(killTime.value, 0, "no rank found on h2 to kill: \(run.stdout) \(run.stderr)")
        XCTAssertNotEqual(run.status, 0)
        let afterKill = ended - killTime.value
        XCTAssertLessThan(afterKill, 10, "the job ended \(afterKill) s after the SIGKILL")
        print("SIGKILL of the rank on h2: the job ended \(String(format: "%.2f", afterKill)) s later")
        XCTAssertTrue(trainerProcesses(on: "h1").isEmpty && trainerProcesses(on: "h2").isEmpty, "a rank outlived the job")
    }
}

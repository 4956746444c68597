import Engine
import Foundation
import TestSupport
import XCTest

/// A run interrupted and resumed — on another rank count, or after SIGTERM or SIGKILL —
/// ends with exactly the uninterrupted run's parameters.
final class ResumeTests: XCTestCase {
    static let common = ["train", "--model", "seed-cnn-bn", "--data", "synthetic:960:96", "--batch-size", "48",
                         "--chunk-size", "8", "--epochs", "2", "--seed", "5", "--momentum", "0.9", "--weight-decay", "1e-4"]

    /// The uninterrupted run's digest (40 steps: 20 per epoch).
    /// A failed reference run fails each test that needs it, not the whole test process.
    static let referenceRun = Result<String, Error> {
        let result = try runTrainer(common, timeout: 300)
        guard result.status == 0, let digest = result.digest else { throw ReferenceRunFailed(stderr: result.stderr) }
        return digest
    }
    static var reference: String { get throws { try referenceRun.get() } }

    struct ReferenceRunFailed: Error { let stderr: String }

    func testTwoRanksWriteThreeRanksAndSerialResume() throws {
        let dir = TestSupport.temporaryDirectory("resume")
        let first = try runTrainer(Self.common + ["--checkpoint-dir", dir, "--checkpoint-every", "5", "--max-steps", "27"],
                                   ranks: 2, timeout: 300)
        XCTAssertEqual(first.status, 0, first.stderr)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        // Every 5 steps and at the end, keeping the newest 3.
        XCTAssertEqual(names, ["checkpoint-000000020.scnn", "checkpoint-000000025.scnn", "checkpoint-000000027.scnn"])
        let copy = TestSupport.temporaryDirectory("resume-copy")
        try FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: dir, toPath: copy)

        let three = try runTrainer(Self.common + ["--checkpoint-dir", dir, "--resume"], ranks: 3, timeout: 300)
        XCTAssertEqual(three.status, 0, three.stderr)
        XCTAssertTrue(three.stdout.contains("resumed from \(dir)/checkpoint-000000027.scnn at step 27"), three.stdout)
        XCTAssertEqual(three.digest, try Self.reference)

        let serial = try runTrainer(Self.common + ["--checkpoint-dir", copy, "--resume"], timeout: 300)
        XCTAssertEqual(serial.status, 0, serial.stderr)
        XCTAssertEqual(serial.digest, try Self.reference)
    }

    /// AdamW with clipping and label smoothing, written on 2 ranks: its moments are in the
    /// checkpoint, and resuming on 3 ranks or on 1 ends with the uninterrupted run's bits.
    func testAdamRunWrittenOnTwoRanksResumesOnThreeAndOne() throws {
        let adam = Self.common + ["--optimizer", "adamw", "--lr", "0.002", "--clip-grad-norm", "1", "--label-smoothing", "0.1"]
        let uninterrupted = try runTrainer(adam, timeout: 300)
        XCTAssertEqual(uninterrupted.status, 0, uninterrupted.stderr)
        let dir = TestSupport.temporaryDirectory("resume-adam")
        let first = try runTrainer(adam + ["--checkpoint-dir", dir, "--max-steps", "13"], ranks: 2, timeout: 300)
        XCTAssertEqual(first.status, 0, first.stderr)
        let (state, network) = try loadCheckpoint(path: "\(dir)/checkpoint-000000013.scnn")
        XCTAssertEqual(state.optimizerState.count, 2 * network.parameterCount, "AdamW's two moments")
        let copy = TestSupport.temporaryDirectory("resume-adam-copy")
        try FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: dir, toPath: copy)
        for (ranks, directory) in [(3, dir), (1, copy)] {
            let resumed = try runTrainer(adam + ["--checkpoint-dir", directory, "--resume"], ranks: ranks == 1 ? nil : ranks, timeout: 300)
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssertTrue(resumed.stdout.contains("at step 13"), resumed.stdout)
            XCTAssertEqual(resumed.digest, uninterrupted.digest, "resumed on \(ranks) rank(s)")
        }
    }

    /// A format-2 checkpoint (SGD, from the build before Adam) resumes on 2 ranks to the
    /// uninterrupted run's bits: the settings it lacks mean what that build did.
    func testFormat2CheckpointResumesToTheSameBits() throws {
        let dir = TestSupport.temporaryDirectory("resume-v2")
        let first = try runTrainer(Self.common + ["--checkpoint-dir", dir, "--max-steps", "13"], timeout: 300)
        XCTAssertEqual(first.status, 0, first.stderr)
        let path = "\(dir)/checkpoint-000000013.scnn"
        let bytes = try asFormat2([UInt8](try XCTUnwrap(FileManager.default.contents(atPath: path))))
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        XCTAssertEqual(try loadCheckpoint(path: path).0.fileVersion, 2)
        let resumed = try runTrainer(Self.common + ["--checkpoint-dir", dir, "--resume"], ranks: 2, timeout: 300)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("at step 13"), resumed.stdout)
        XCTAssertEqual(resumed.digest, try Self.reference)
    }

    /// With augmentation (whose draws follow the epoch), normalisation and a validation split:
    /// written on 3 ranks, resumed on 2 and serially, the uninterrupted run's bits.
    func testAugmentedRunResumesOnOtherRankCounts() throws {
        // 960 − 192 held out: 16 steps per epoch, 32 in all; the stop at 21 is inside epoch 2.
        let arguments = Self.common + ["--augment", "crop3,flip,erase", "--normalize", "--val-split", "192"]
        let reference = try runTrainer(arguments, timeout: 300)
        XCTAssertEqual(reference.status, 0, reference.stderr)
        let dir = TestSupport.temporaryDirectory("resume-augment")
        let first = try runTrainer(arguments + ["--checkpoint-dir", dir, "--checkpoint-every", "7", "--max-steps", "21"],
                                   ranks: 3, timeout: 300)
        XCTAssertEqual(first.status, 0, first.stderr)
        let copy = TestSupport.temporaryDirectory("resume-augment-copy")
        try FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: dir, toPath: copy)
        let two = try runTrainer(arguments + ["--checkpoint-dir", dir, "--resume"], ranks: 2, timeout: 300)
        XCTAssertEqual(two.status, 0, two.stderr)
        XCTAssertTrue(two.stdout.contains("at step 21"), two.stdout)
        XCTAssertEqual(two.digest, try XCTUnwrap(reference.digest))
        let serial = try runTrainer(arguments + ["--checkpoint-dir", copy, "--resume"], timeout: 300)
        XCTAssertEqual(serial.digest, reference.digest, serial.stderr)
        let other = try runTrainer(Self.common + ["--augment", "crop3,flip", "--normalize", "--val-split", "192",
                                                  "--checkpoint-dir", copy, "--resume"], timeout: 300)
        XCTAssertEqual(other.status, 64, other.stderr)
        XCTAssertTrue(other.stderr.contains("was written with --augment crop3,flip,erase (now crop3,flip)"), other.stderr)
    }

    func testCorruptNewestCheckpointIsSkippedWithAReason() throws {
        let dir = TestSupport.temporaryDirectory("skip")
        let first = try runTrainer(Self.common + ["--checkpoint-dir", dir, "--checkpoint-every", "10", "--max-steps", "30"], timeout: 300)
        XCTAssertEqual(first.status, 0, first.stderr)
        let newest = "\(dir)/checkpoint-000000030.scnn"
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: newest))
        try handle.truncate(atOffset: try handle.seekToEnd() - 100)
        try handle.close()
        let resumed = try runTrainer(Self.common + ["--checkpoint-dir", dir, "--resume"], ranks: 2, timeout: 300)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("skipping \(newest)"), resumed.stdout)
        XCTAssertTrue(resumed.stdout.contains("at step 20"), resumed.stdout)
        XCTAssertEqual(resumed.digest, try Self.reference)
    }

    func testMismatchedFlagsAreRefused() throws {
        let dir = TestSupport.temporaryDirectory("mismatch")
        XCTAssertEqual(try runTrainer(Self.common + ["--checkpoint-dir", dir, "--max-steps", "3"], timeout: 300).status, 0)
        let result = try runTrainer(Self.common.map { $0 == "48" ? "24" : $0 } + ["--checkpoint-dir", dir, "--resume"], timeout: 300)
        XCTAssertEqual(result.status, 64, result.stderr)
        XCTAssertTrue(result.stderr.contains("--batch-size 48 (now 24)"), result.stderr)
    }

    func testSIGTERMToMpirunCheckpointsAndResumesToTheSameBits() throws {
        let dir = TestSupport.temporaryDirectory("sigterm")
        // Both ranks hold after step 10 until the signal reaches them: the run is mid-way
        // however fast the machine.
        let hold = Hold("step", step: 10)
        let signalTime = Atomic()
        // After SIGTERM, mpirun waits odls_base_sigkill_timeout (1 s by default) before it
        // SIGKILLs the ranks: long enough here for a step and the checkpoint on any machine.
        let environment = hold.environment.merging(["OMPI_MCA_odls_base_sigkill_timeout": "30"]) { $1 }
        let stopped = try runTrainer(Self.common + ["--checkpoint-dir", dir], ranks: 2, timeout: 300,
                                     environment: environment) { process in
            hold.onceHeld(process, ranks: 2) { _ in
                signalTime.set(Date().timeIntervalSince1970)
                kill(process.processIdentifier, SIGTERM)
            }
        }
        XCTAssertGreaterThan(signalTime.value, 0, "the ranks never held: \(stopped.stdout) \(stopped.stderr)")
        // mpirun exits non-zero after forwarding SIGTERM even when every rank exits 75
        // (docs/architecture.md §5), so its status is not checked; the message and the
        // checkpoint are.
        print("SIGTERM to mpirun: the job ended \(String(format: "%.2f", Date().timeIntervalSince1970 - signalTime.value)) s after the signal")
        XCTAssertTrue(stopped.stdout.contains("stopped by SIGTERM after step 11; checkpoint \(dir)/checkpoint-000000011.scnn"),
                      stopped.stdout + stopped.stderr)
        XCTAssertNil(stopped.digest, "the run finished despite the signal")
        let resumed = try runTrainer(Self.common + ["--checkpoint-dir", dir, "--resume"], ranks: 2, timeout: 300)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resumed from \(dir)/checkpoint-000000011.scnn at step 11"), resumed.stdout)
        XCTAssertEqual(resumed.digest, try Self.reference)
    }

    /// A stopped run is not a finished one: it exits 75 (EX_TEMPFAIL), so `train && plot`
    /// does not carry on, and a batch script knows to requeue.
    func testSIGINTStopsASerialRunWithACheckpointAndExit75() throws {
        let dir = TestSupport.temporaryDirectory("sigint")
        let hold = Hold("step", step: 5)
        let stopped = try runTrainer(Self.common + ["--checkpoint-dir", dir], timeout: 300, environment: hold.environment) { process in
            hold.onceHeld(process) { pids in kill(pids[0], SIGINT) }
        }
        XCTAssertEqual(stopped.status, 75, stopped.stdout + stopped.stderr)
        XCTAssertTrue(stopped.stdout.contains("stopped by SIGINT after step 6; checkpoint \(dir)/checkpoint-000000006.scnn"),
                      stopped.stdout)
        XCTAssertEqual(try checkpointState(path: "\(dir)/checkpoint-000000006.scnn").step, 6)
    }

    /// SIGKILL while the run checkpoints every step, at steps drawn at random and, in half the
    /// trials, halfway through writing a checkpoint: the newest complete checkpoint always
    /// loads and resumes to the uninterrupted run's bits.
    func testSIGKILLAtRandomPointsAlwaysLeavesAResumableCheckpoint() throws {
        let rng = CounterRNG(seed: 99, stream: "kill-steps")
        for trial in 0..<6 {
            let dir = TestSupport.temporaryDirectory("kill")
            let duringWrite = trial % 2 == 1
            let step = 2 + rng.integer(UInt64(trial), below: 37)
            let hold = Hold(duringWrite ? "write" : "step", step: step)
            // OutputFile's temporary file beside the checkpoint being written.
            let partial = "checkpoint-\(String(format: "%09d", step)).scnn."
            let sawPartialWrite = Atomic()
            let killed = try runTrainer(Self.common + ["--checkpoint-dir", dir, "--checkpoint-every", "1"], timeout: 300,
                                        environment: hold.environment) { process in
                hold.onceHeld(process) { pids in
                    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
                    if names.contains(where: { $0.hasPrefix(partial) && $0.hasSuffix(".tmp") }) { sawPartialWrite.set(1) }
                    kill(pids[0], SIGKILL)
                }
            }
            let label = "trial \(trial), killed at step \(step)\(duringWrite ? " during the checkpoint write" : "")"
            XCTAssertTrue(killed.signaled, "\(label): the run was not killed: \(killed.stdout)")
            XCTAssertEqual(sawPartialWrite.value, duringWrite ? 1 : 0, "\(label): a partial checkpoint should exist exactly during a write")
            let resumed = try runTrainer(Self.common + ["--checkpoint-dir", dir, "--resume"], timeout: 300)
            XCTAssertEqual(resumed.status, 0, "\(label): \(resumed.stderr)")
            let from = duringWrite ? step - 1 : step
            XCTAssertTrue(resumed.stdout.contains("resumed from \(dir)/checkpoint-\(String(format: "%09d", from)).scnn at step \(from)"),
                          "\(label): \(resumed.stdout)")
            XCTAssertEqual(resumed.digest, try Self.reference, label)
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".tmp") }
            XCTAssertEqual(leftovers, [], "\(label): the killed write's temporary file outlived the resume")
        }
    }
}

/// A Double shared between the test and a signalling thread.
final class Atomic: @unchecked Sendable {
    private let lock = NSLock()
    private var stored = 0.0
    var value: Double { lock.withLock { stored } }
    func set(_ v: Double) { lock.withLock { stored = v } }
}

import Engine
import Foundation

/// A pause at an exact point of a run, for tests of interruption (docs/reliability.md): with
/// `SWIFT_CNN_TRAIN_HOLD=step:N` every rank holds once it has finished step N (and written
/// the periodic checkpoint due at N, if any; the last step's checkpoint comes after); with `write:N` rank 0 holds in the middle of
/// writing step N's checkpoint, half of the temporary file written and synced. On arrival a
/// rank writes its process id to `$SWIFT_CNN_TRAIN_HOLD_FILE.<rank>`; it then waits until a
/// stop signal arrives (SIGTERM, SIGINT or SIGUSR1: the run goes on and stops as usual) or
/// it is killed. So a test interrupts a run at a point taken from the run's own progress,
/// whatever the speed of the machine, and knows that the point was reached.
enum TestHold {
    enum Point: String, Sendable {
        /// After a training step (and its checkpoint).
        case step
        /// Halfway through writing a checkpoint (rank 0 only).
        case write
    }

    /// The point `SWIFT_CNN_TRAIN_HOLD` names, read once; nil when unset or malformed.
    static let requested: (point: Point, step: Int, marker: String?)? = {
        let environment = ProcessInfo.processInfo.environment
        guard let text = environment["SWIFT_CNN_TRAIN_HOLD"] else { return nil }
        let parts = text.split(separator: ":")
        guard parts.count == 2, let point = Point(rawValue: String(parts[0])), let step = Int(parts[1]) else { return nil }
        return (point, step, environment["SWIFT_CNN_TRAIN_HOLD_FILE"])
    }()

    /// Holds here if the run was asked to hold at `point` of `step`.
    static func reached(_ point: Point, step: Int, rank: Int) {
        guard let requested, requested.point == point, requested.step == step else { return }
        if let marker = requested.marker {
            try? "\(getpid())\n".write(toFile: "\(marker).\(rank)", atomically: true, encoding: .utf8)
        }
        while !StopSignal.requested { usleep(1000) }
    }
}

import Engine
import Foundation

/// SIGTERM, SIGINT and SIGUSR1 ask training to stop at the next step boundary with a
/// checkpoint. The handler only sets a flag; the trainer folds it into each step's small
/// allreduce so that every rank stops after the same step (docs/architecture.md §5).
public enum StopSignal {
    nonisolated(unsafe) private static var received: sig_atomic_t = 0
    nonisolated(unsafe) private static var number: sig_atomic_t = 0

    public static func install() {
        for s in [SIGTERM, SIGINT, SIGUSR1] {
            signal(s) { sig in
                // The first signal names the stop (a batch shell may forward USR1 after TERM).
                if StopSignal.received == 0 { StopSignal.number = sig }
                StopSignal.received = 1
            }
        }
    }

    public static var requested: Bool { received != 0 }

    public static var name: String {
        switch number {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGUSR1: return "SIGUSR1"
        default: return "a signal"
        }
    }
}

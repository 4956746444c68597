import Engine
import Foundation

/// Ends this rank when one blocking collective has waited longer than a timeout for the
/// other ranks (`--collective-timeout`).
///
/// A lost host or a cut link leaves every surviving rank blocked in `MPI_Allreduce` for as
/// long as TCP takes to give up on the peer — many minutes — while Open MPI's launcher may no
/// longer reach those ranks to stop them. So each rank watches itself: `MPICommunicator` runs
/// every MPI call inside `guarding`, and a thread checks ten times per timeout (at most once a
/// second) whether the current call started more than `timeout` seconds ago. If so it prints one line naming the
/// step and `_exit(1)`s. It calls no MPI (the library is initialised for the main thread
/// only, and `MPI_Abort` may itself block on the lost link); the launcher sees a rank leave
/// without `MPI_Finalize` and stops the ranks it can still reach, and every other rank's own
/// watchdog fires within the same bound.
///
/// Only time spent inside MPI counts, not a rank's own computation, so the timeout bounds
/// how long one rank waits for the slowest. It must exceed the longest legitimate wait: rank 0
/// writing a checkpoint while the others wait for it, or ranks loading data at different speeds.
public final class CollectiveWatchdog: @unchecked Sendable {
    /// Seconds one MPI call may block.
    public let timeout: Double
    private let rank: Int
    private let lock = NSLock()
    /// The MPI call in progress and when it started (monotonic seconds), or nil between calls.
    private var current: (operation: String, since: Double)?
    private var activityText = "before the first step"

    private init(timeout: Double, rank: Int) {
        self.timeout = timeout
        self.rank = rank
    }

    /// Starts a watchdog thread for rank `rank`. `timeout` must be positive.
    static func start(timeout: Double, rank: Int) -> CollectiveWatchdog {
        precondition(timeout > 0 && timeout.isFinite, "the collective timeout must be a positive number of seconds")
        let watchdog = CollectiveWatchdog(timeout: timeout, rank: rank)
        let thread = Thread { watchdog.watch() }
        thread.name = "collective-watchdog"
        thread.start()
        return watchdog
    }

    /// What the rank is doing, for the message: "at step 12", "while evaluating after step 20".
    public var activity: String {
        get { lock.withLock { activityText } }
        set { lock.withLock { activityText = newValue } }
    }

    /// Runs one MPI call under the watchdog.
    public func guarding<T>(_ operation: String, _ body: () throws -> T) rethrows -> T {
        let start = Self.now()
        lock.withLock { current = (operation, start) }
        defer { lock.withLock { current = nil } }
        return try body()
    }

    private func watch() {
        // Check often enough that a timeout ends the rank within about a tenth of it late.
        let interval = UInt32(min(max(timeout / 10, 0.05), 1) * 1_000_000)
        while true {
            usleep(interval)
            let overdue: (operation: String, activity: String)? = lock.withLock {
                guard let current, Self.now() - current.since > timeout else { return nil }
                return (current.operation, activityText)
            }
            if let overdue { fail(operation: overdue.operation, activity: overdue.activity) }
        }
    }

    private func fail(operation: String, activity: String) -> Never {
        let seconds = timeout.rounded() == timeout ? String(Int(timeout)) : String(timeout)
        let who = rank == 0 ? "error" : "error (rank \(rank))"
        let line = "\(who): no progress from the other ranks for \(seconds) s \(activity) (collective timed out in \(operation); a host may be lost); raise --collective-timeout if a rank is just slow\n"
        line.utf8CString.withUnsafeBufferPointer { _ = write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
        _exit(1)
    }

    private static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }
}

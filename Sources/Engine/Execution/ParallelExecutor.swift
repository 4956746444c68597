import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The work of one parallel region of a `ParallelExecutor`: `run` once for every index, on any
/// of the threads, with that thread's workspace. A task is a small struct holding what the
/// work reads and writes; unlike a closure, it reaches the worker threads without a heap
/// allocation (a non-escaping closure can only be handed to another thread through
/// `withoutActuallyEscaping`, which boxes it on every call).
public protocol ParallelTask {
    func run(index: Int, workspace: Workspace)
    /// Runs the task of this type stored at `task`: how a worker runs a task it knows only by
    /// its type and its address. Conformers take the default implementation below.
    static func run(at task: UnsafeRawPointer, index: Int, workspace: Workspace)
}

extension ParallelTask {
    public static func run(at task: UnsafeRawPointer, index: Int, workspace: Workspace) {
        task.assumingMemoryBound(to: Self.self).pointee.run(index: index, workspace: workspace)
    }
}

/// Runs the indices of a parallel region (a pass's chunks, or a thread's slice of other work)
/// on a fixed number of threads. The indices are cut into one contiguous share per thread;
/// since a task's result for an index does not depend on where it runs, neither do the bits.
///
/// The threads persist: the caller is thread 0 and `threads − 1` workers wait for work,
/// spinning briefly before they sleep, so that a layer's parallel region costs a few atomic
/// operations rather than a dispatch. Thread t first takes the t-th share, so a chunk's
/// activations stay in the cache of the core that produced them from one layer to the next;
/// then it takes the indices of other shares not started yet, so that the unstarted work of a
/// thread slowed down (by another process on its core, or waking up) is taken over. A region
/// still ends only when every worker has checked in.
public final class ParallelExecutor {
    public let threadCount: Int
    public let workspaces: [Workspace]
    private let team: Team?

    public init(threads: Int) {
        threadCount = max(1, threads)
        workspaces = (0..<threadCount).map { _ in Workspace() }
        team = threadCount > 1 ? Team(workspaces: workspaces) : nil
    }

    deinit { team?.stop() }

    /// Part t of `parts` contiguous, near-equal parts of `range`: how threads split a region's
    /// indices, ranks split the chunks, and threads split elementwise work (whose bits do not
    /// depend on the split).
    public static func part(_ t: Int, of parts: Int, _ range: Range<Int>) -> Range<Int> {
        (range.lowerBound + t * range.count / parts)..<(range.lowerBound + (t + 1) * range.count / parts)
    }

    /// Runs `task` for every index in `0..<count` and returns when all are done. Not reentrant: the task must
    /// not call `run` (or anything that does, such as `ExactReducer.sumChunks`).
    public func run<Task: ParallelTask>(count: Int, _ task: Task) {
        guard min(threadCount, count) > 1, let team else {
            for i in 0..<count { task.run(index: i, workspace: workspaces[0]) }
            return
        }
        // The workers get the task's type and address: two words, no allocation. The address
        // is valid only inside this closure, and `team.run` returns only after every worker
        // has checked in, so no worker reads it afterwards.
        withUnsafePointer(to: task) { team.run(count: count, type: Task.self, task: UnsafeRawPointer($0)) }
    }
}

/// The worker threads of a `ParallelExecutor` and their hand-shake. Workers hold this object,
/// not the executor, so that the executor's deinit can stop them.
private final class Team: @unchecked Sendable {
    /// Bumped once per parallel region; workers wait for it to change.
    private let generation = Atomic<Int>(0)
    /// Workers yet to finish the current region.
    private let remaining = Atomic<Int>(0)
    /// Per thread, the next unclaimed index of its share and the share's end.
    private let shares: [Share]
    private let stopping = Atomic<Bool>(false)
    private let sleepers: [Sleeper]
    private let workspaces: [Workspace]
    /// The current region's task, by type and address (an existential metatype and a pointer:
    /// no box); set before `generation` moves and cleared after every worker is done with it.
    private var task: (type: any ParallelTask.Type, address: UnsafeRawPointer)?
    /// About 0.1 ms of polling before a worker sleeps: longer than the gap between layers,
    /// short enough not to steal a core from another process for long.
    private static let spinLimit = 100_000

    final class Share: @unchecked Sendable {
        let next = Atomic<Int>(0)
        var end = 0
    }

    final class Sleeper: @unchecked Sendable {
        let asleep = Atomic<Bool>(false)
        let semaphore = DispatchSemaphore(value: 0)
    }

    init(workspaces: [Workspace]) {
        self.workspaces = workspaces
        let workers = workspaces.count - 1
        sleepers = (0..<workers).map { _ in Sleeper() }
        shares = workspaces.map { _ in Share() }
        for worker in 1...workers {
            let thread = Thread { [self] in work(as: worker) }
            thread.name = "parallel-worker-\(worker)"
            thread.start()
        }
    }

    /// Runs the task of type `type` at `task` on every index below `count`, thread t (the caller is 0)
    /// starting with the t-th contiguous share (see `runShare`), and returns when all are
    /// done: only then may the task's memory go.
    func run(count: Int, type: any ParallelTask.Type, task: UnsafeRawPointer) {
        self.task = (type, task)
        let threads = min(shares.count, count)
        for (t, share) in shares.enumerated() {
            let range = t < threads ? ParallelExecutor.part(t, of: threads, 0..<count) : 0..<0
            share.next.store(range.lowerBound, ordering: .relaxed)
            share.end = range.upperBound
        }
        remaining.store(sleepers.count, ordering: .relaxed)
        generation.add(1, ordering: .sequentiallyConsistent)
        wakeSleepers()
        runShare(0)
        var spins = 0
        while remaining.load(ordering: .acquiring) != 0 {
            spins += 1
            if spins > Team.spinLimit { sched_yield() }
        }
        self.task = nil
    }

    /// Thread t's indices of the current region: its own share, then any index of another
    /// share not yet claimed (each claim takes the share's next index, so every index runs once).
    private func runShare(_ t: Int) {
        guard let task else { return }
        for v in 0..<shares.count {
            let share = shares[(t + v) % shares.count]
            while true {
                let i = share.next.wrappingAdd(1, ordering: .relaxed).oldValue
                if i >= share.end { break }
                task.type.run(at: task.address, index: i, workspace: workspaces[t])
            }
        }
    }

    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        generation.add(1, ordering: .sequentiallyConsistent)
        wakeSleepers()
    }

    private func wakeSleepers() {
        for sleeper in sleepers where sleeper.asleep.exchange(false, ordering: .sequentiallyConsistent) {
            sleeper.semaphore.signal()
        }
    }

    private func work(as worker: Int) {
        let sleeper = sleepers[worker - 1]
        var seen = 0
        while true {
            var spins = 0
            while generation.load(ordering: .acquiring) == seen {
                spins += 1
                if spins < Team.spinLimit { continue }
                // Announce the sleep, then look once more: a region that started in between
                // either sees `asleep` and signals, or was seen here (and its signal, if it
                // was sent, is consumed).
                sleeper.asleep.store(true, ordering: .sequentiallyConsistent)
                if generation.load(ordering: .sequentiallyConsistent) != seen {
                    if !sleeper.asleep.exchange(false, ordering: .sequentiallyConsistent) { sleeper.semaphore.wait() }
                    break
                }
                sleeper.semaphore.wait()
                spins = 0
            }
            seen = generation.load(ordering: .acquiring)
            if stopping.load(ordering: .acquiring) { return }
            runShare(worker)
            remaining.subtract(1, ordering: .releasing)
        }
    }
}

import Engine
import Foundation
import Synchronization
import XCTest

/// The executor's contract: `run` returns only after every index has run exactly once, for any
/// index and thread count, with the workers spinning or woken from sleep; and `Pass` hands its
/// tasks each chunk's samples (`forEachChunk`) or shares that cover every sample once
/// (`forEachShare`).
final class ParallelExecutorTests: XCTestCase {
    /// How many times each index was visited. Increments are atomic, so that an index visited
    /// twice at once by two threads still counts twice.
    final class Visits: @unchecked Sendable {
        final class Counter {
            let value = Atomic<Int>(0)
        }
        private let counters: [Counter]

        init(_ count: Int) { counters = (0..<count).map { _ in Counter() } }

        func visit(_ i: Int) { counters[i].value.add(1, ordering: .relaxed) }
        var counts: [Int] { counters.map { $0.value.load(ordering: .relaxed) } }
    }

    struct CountIndices: ParallelTask {
        let visits: Visits
        func run(index: Int, workspace: Workspace) { visits.visit(index) }
    }

    func testEveryIndexRunsExactlyOnce() {
        for threads in [2, 3] {
            let executor = ParallelExecutor(threads: threads)
            for count in [0, 1, 3, 8] {
                let visits = Visits(count), rounds = 200
                for round in 0..<rounds {
                    // Now and then a pause long enough for the workers to go to sleep, so that
                    // the next region has to wake them.
                    if round % 50 == 0 { usleep(2_000) }
                    executor.run(count: count, CountIndices(visits: visits))
                }
                XCTAssertEqual(visits.counts, [Int](repeating: rounds, count: count), "\(threads) threads, \(count) indices")
            }
        }
    }

    /// Per chunk: its samples visited, and whether `first`/`count` were the chunk's samples.
    struct CountChunkSamples: ChunkSamplesTask {
        let pass: Pass
        let samples: Visits, mismatches: Visits
        func run(first: Int, count: Int, chunk: Int, workspace: Workspace) {
            if pass.samples(ofChunk: chunk) != first..<(first + count) { mismatches.visit(0) }
            for s in first..<(first + count) { samples.visit(s) }
        }
    }

    /// Per share: its samples visited, and whether it starts on a chunk boundary.
    struct CountShareSamples: ShareSamplesTask {
        let pass: Pass
        let samples: Visits, shares: Visits, mismatches: Visits
        func run(first: Int, count: Int, workspace: Workspace) {
            if first % pass.chunkSize != 0 { mismatches.visit(0) }
            shares.visit(0)
            for s in first..<(first + count) { samples.visit(s) }
        }
    }

    func testPassTasksCoverEverySampleOnce() {
        let parameters = UnsafeMutablePointer<Float>.allocate(capacity: 1)
        defer { parameters.deallocate() }
        // 19 samples in chunks of 4: five chunks, the last of 3.
        for (threads, sampleCount) in [(1, 19), (2, 19), (3, 19), (2, 3), (3, 8)] {
            let pass = Pass(samples: .init(count: sampleCount, chunkSize: 4, globalCount: sampleCount),
                            state: .init(parameters: parameters, buffers: parameters,
                                         parameterCount: 1),
                            training: true, executor: ParallelExecutor(threads: threads), reducer: ExactReducer(communicator: SerialCommunicator()), hyper: LayerHyperparameters())
            let what = "\(threads) threads, \(sampleCount) samples"
            let chunkSamples = Visits(sampleCount), chunkMismatches = Visits(1)
            pass.forEachChunk(CountChunkSamples(pass: pass, samples: chunkSamples, mismatches: chunkMismatches))
            XCTAssertEqual(chunkSamples.counts, [Int](repeating: 1, count: sampleCount), "forEachChunk, \(what)")
            XCTAssertEqual(chunkMismatches.counts, [0], "forEachChunk's samples are the chunk's, \(what)")
            let shareSamples = Visits(sampleCount), shares = Visits(1), shareMismatches = Visits(1)
            pass.forEachShare(CountShareSamples(pass: pass, samples: shareSamples, shares: shares, mismatches: shareMismatches))
            XCTAssertEqual(shareSamples.counts, [Int](repeating: 1, count: sampleCount), "forEachShare, \(what)")
            XCTAssertEqual(shares.counts, [min(threads, pass.chunkCount)], "one share per thread, \(what)")
            XCTAssertEqual(shareMismatches.counts, [0], "shares start on a chunk, \(what)")
        }
    }
}

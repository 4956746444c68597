import Foundation

/// What the data-parallel step needs from the ranks it runs on. The serial implementation is
/// a communicator of one, so the same code path is the serial reference run.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// What this rank is doing ("at step 12"), named when a collective waits too long.
    var activity: String { get set }
    /// Elementwise maximum across ranks, in place.
    func allreduceMax(_ values: UnsafeMutableBufferPointer<Float>) throws
    /// Elementwise integer sum across ranks, in place (exact, any order).
    func allreduceSum(_ values: UnsafeMutableBufferPointer<Int64>) throws
    /// Elementwise Float sum across ranks, in place (order depends on the MPI library).
    func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws
    /// Starts a non-blocking Float sum allreduce in place; the values are valid after `waitAll`.
    func startAllreduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws
    /// Completes every started non-blocking operation.
    func waitAll() throws
    /// Rank 0's values to every rank.
    func broadcast(_ values: UnsafeMutableBufferPointer<Float>) throws
    /// Every rank's bytes to every rank, concatenated in rank order (all the same length).
    func allgather(_ bytes: [UInt8]) throws -> [UInt8]
    /// Rank r holds `samples[r]` rows of `width` floats, at row Σ samples[..<r] of `values`;
    /// fills in every other rank's rows, in place.
    func allgather(inPlace values: UnsafeMutableBufferPointer<Float>, samples: [Int], width: Int) throws
    /// Ends every rank of the job with `code`; does not return.
    func abort(code: Int32) -> Never
    func finalize()
}

extension Communicator {
    public func allreduceMax(_ values: inout [Float]) throws {
        try values.withUnsafeMutableBufferPointer { try allreduceMax($0) }
    }
    public func allreduceSum(_ values: inout [Int64]) throws {
        try values.withUnsafeMutableBufferPointer { try allreduceSum($0) }
    }
}

/// One process alone: every collective is the identity.
public final class SerialCommunicator: Communicator {
    public init() {}
    public var activity = ""
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceMax(_ values: UnsafeMutableBufferPointer<Float>) throws {}
    public func allreduceSum(_ values: UnsafeMutableBufferPointer<Int64>) throws {}
    public func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {}
    public func startAllreduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {}
    public func waitAll() throws {}
    public func broadcast(_ values: UnsafeMutableBufferPointer<Float>) throws {}
    public func allgather(_ bytes: [UInt8]) throws -> [UInt8] { bytes }
    public func allgather(inPlace values: UnsafeMutableBufferPointer<Float>, samples: [Int], width: Int) throws {}
    public func abort(code: Int32) -> Never { exit(code) }
    public func finalize() {}
}

/// The chunks rank r of `ranks` works on: ⌊r·n/ranks⌋ ..< ⌊(r+1)·n/ranks⌋:
/// contiguous, and as even as the count allows.
public func chunkRange(rank: Int, ranks: Int, chunks: Int) -> Range<Int> {
    ParallelExecutor.part(rank, of: ranks, 0..<chunks)
}

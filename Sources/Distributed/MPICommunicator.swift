import Engine
import CMPI
import Foundation

/// The communicator of an `mpirun` (or `srun --mpi=pmix`) job: MPI_COMM_WORLD.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    /// Ranks of this job that share this rank's node (and so its memory and cores), from
    /// MPI itself: right for any launcher (mpirun, srun, a hostfile).
    public let ranksOnThisNode: Int
    private var finalized = false
    private var pending: [MPI_Request?] = []
    private var gatherCounts: [Int32] = [], gatherOffsets: [Int32] = []
    /// Bounds every MPI call's wait, once started (`startWatchdog`).
    private var watchdog: CollectiveWatchdog?

    public var activity: String {
        get { watchdog?.activity ?? "" }
        set { watchdog?.activity = newValue }
    }

    /// True when a process manager launched us: then MPI is initialised, otherwise the run is serial.
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil || env["PMI_RANK"] != nil
    }

    public init() {
        var provided: Int32 = 0
        MPI_Init_thread(nil, nil, cmpi_thread_funneled(), &provided)
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(cmpi_comm_world(), &r)
        MPI_Comm_size(cmpi_comm_world(), &s)
        rank = Int(r)
        size = Int(s)
        var node: MPI_Comm? = nil
        var local: Int32 = 1
        if MPI_Comm_split_type(cmpi_comm_world(), cmpi_comm_type_shared(), r, cmpi_info_null(), &node) == cmpi_success() {
            MPI_Comm_size(node, &local)
            MPI_Comm_free(&node)
        }
        ranksOnThisNode = Int(local)
    }

    /// Ends this rank when one MPI call waits longer than `timeout` seconds for the others.
    public func startWatchdog(timeout: Double) {
        guard watchdog == nil else { return }
        watchdog = CollectiveWatchdog.start(timeout: timeout, rank: rank)
    }

    /// Runs one MPI call (under the collective watchdog, when there is one) and checks its result.
    private func check(_ call: @autoclosure () -> Int32, _ what: String) throws {
        let code = watchdog?.guarding(what, call) ?? call()
        guard code == cmpi_success() else { throw CommunicatorError.failed("\(what) failed with MPI error \(code)") }
    }

    public func allreduceMax(_ values: UnsafeMutableBufferPointer<Float>) throws {
        try check(MPI_Allreduce(cmpi_in_place(), values.baseAddress, Int32(values.count), cmpi_float(), cmpi_op_max(), cmpi_comm_world()), "MPI_Allreduce(MAX)")
    }

    public func allreduceSum(_ values: UnsafeMutableBufferPointer<Int64>) throws {
        try check(MPI_Allreduce(cmpi_in_place(), values.baseAddress, Int32(values.count), cmpi_int64(), cmpi_op_sum(), cmpi_comm_world()), "MPI_Allreduce(SUM, int64)")
    }

    public func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
        try check(MPI_Allreduce(cmpi_in_place(), values.baseAddress, Int32(values.count), cmpi_float(), cmpi_op_sum(), cmpi_comm_world()), "MPI_Allreduce(SUM, float)")
    }

    public func startAllreduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
        var request: MPI_Request? = cmpi_request_null()
        try check(MPI_Iallreduce(cmpi_in_place(), values.baseAddress, Int32(values.count), cmpi_float(), cmpi_op_sum(),
                                 cmpi_comm_world(), &request), "MPI_Iallreduce")
        pending.append(request)
    }

    public func waitAll() throws {
        guard !pending.isEmpty else { return }
        try check(MPI_Waitall(Int32(pending.count), &pending, cmpi_statuses_ignore()), "MPI_Waitall")
        pending.removeAll(keepingCapacity: true)
    }

    public func broadcast(_ values: UnsafeMutableBufferPointer<Float>) throws {
        try check(MPI_Bcast(values.baseAddress, Int32(values.count), cmpi_float(), 0, cmpi_comm_world()), "MPI_Bcast")
    }

    public func allgather(_ bytes: [UInt8]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: bytes.count * size)
        try bytes.withUnsafeBytes { src in
            try out.withUnsafeMutableBytes { dst in
                try check(MPI_Allgather(src.baseAddress, Int32(bytes.count), cmpi_uint8(), dst.baseAddress,
                                        Int32(bytes.count), cmpi_uint8(), cmpi_comm_world()), "MPI_Allgather")
            }
        }
        return out
    }

    public func allgather(inPlace values: UnsafeMutableBufferPointer<Float>, samples: [Int], width: Int) throws {
        // Reused, so that a step's gathers allocate nothing.
        gatherCounts.removeAll(keepingCapacity: true)
        gatherOffsets.removeAll(keepingCapacity: true)
        var offset = 0
        for rows in samples {
            gatherCounts.append(Int32(rows * width))
            gatherOffsets.append(Int32(offset))
            offset += rows * width
        }
        precondition(offset <= values.count && offset <= Int(Int32.max), "allgather beyond its buffer")
        try check(MPI_Allgatherv(cmpi_in_place(), 0, cmpi_float(), values.baseAddress, gatherCounts, gatherOffsets,
                                 cmpi_float(), cmpi_comm_world()), "MPI_Allgatherv")
    }

    public func abort(code: Int32) -> Never {
        MPI_Abort(cmpi_comm_world(), code)
        exit(code)
    }

    public func finalize() {
        guard !finalized else { return }
        finalized = true
        if let watchdog {
            watchdog.activity = "at the end"
            _ = watchdog.guarding("MPI_Finalize") { MPI_Finalize() }
        } else {
            MPI_Finalize()
        }
    }
}

public enum CommunicatorError: Error, CustomStringConvertible {
    case failed(String)
    public var description: String {
        switch self { case .failed(let m): return m }
    }
}

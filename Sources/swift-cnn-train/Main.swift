import ArgumentParser
import DistributedTraining
import Engine
import Foundation

@main
struct SwiftCNNTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swift-cnn-train",
        abstract: "Data-parallel CNN training whose weights are bit-for-bit the same for any rank or thread count.",
        discussion: """
        Run it alone for a serial run, or under `mpirun -n N` (or `srun --mpi=pmix`) for N ranks: \
        the parameter digest printed at the end is the same either way.

        Exit codes: 0 success; 1 a runtime error (bad data or checkpoint, non-finite values, I/O); \
        64 a usage error (bad flag, value or model spec, or ranks started with different \
        settings); 75 training stopped by SIGTERM, SIGINT or SIGUSR1 (with its checkpoint \
        written: rerun with --resume). Under mpirun, every rank ends with the same code.
        """,
        version: "0.1.0",
        subcommands: [Train.self, Evaluate.self, Predict.self, Inspect.self, Export.self, Plot.self],
        defaultSubcommand: nil
    )
}

/// The process's place in the job: its communicator and whether it prints.
enum Job {
    static let communicator: Communicator = MPICommunicator.launchedByMPI ? MPICommunicator() : SerialCommunicator()
    static var isRoot: Bool { communicator.rank == 0 }

    /// Ranks of this job on this node (Open MPI's local size, else Slurm's tasks on the node).
    static var ranksOnThisNode: Int {
        let environment = ProcessInfo.processInfo.environment
        let local = ["OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"].lazy.compactMap { environment[$0].flatMap { Int($0) } }.first
        return max(local ?? communicator.size, 1)
    }

    /// Threads per rank when not given: the cores divided by the ranks on this node.
    static var defaultThreads: Int {
        max(1, ProcessInfo.processInfo.activeProcessorCount / ranksOnThisNode)
    }

    /// Bad flag, value, model spec or mismatched ranks (sysexits' EX_USAGE, as ArgumentParser's own).
    static let usageErrorCode: Int32 = 64
    /// Stopped by a signal at a step boundary, checkpoint written: sysexits' EX_TEMPFAIL, "try
    /// again later" — the cluster scripts requeue on it.
    static let interruptedCode: Int32 = 75

    static func exitCode(for error: Error) -> Int32 {
        switch error {
        case let agreed as AgreedError: return agreed.code
        case is UsageError, EngineError.invalidModel: return usageErrorCode
        default: return 1
        }
    }

    /// Prints on rank 0 only.
    static func say(_ line: String) {
        guard isRoot else { return }
        print(line)
        fflush(stdout)
    }

    /// Runs a step every rank takes together (a collective precedes any error it throws, so all
    /// ranks throw the same): its engine and usage errors become `AgreedError`s that rank 0 reports.
    static func agreed<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error where error is EngineError || error is UsageError {
            throw AgreedError(message: String(describing: error), reportingRank: 0, code: exitCode(for: error))
        }
    }

    /// Runs `body`; on an error prints one line and ends every rank with a non-zero code. An
    /// `AgreedError` is known to every rank: its reporting rank prints it and all exit with its
    /// code. Any other error is this rank's alone: it prints it and ends the job with MPI_Abort.
    static func run(_ body: () throws -> Void) throws {
        do {
            try body()
            communicator.finalize()
        } catch let agreed as AgreedError {
            if communicator.rank == agreed.reportingRank { report(agreed.message) }
            communicator.finalize()
            throw ExitCode(agreed.code)
        } catch {
            let code = exitCode(for: error)
            report(String(describing: error))
            if communicator.size > 1 { communicator.abort(code: code) }
            throw ExitCode(code)
        }
    }

    /// One line on standard error, naming the rank under mpirun unless it is rank 0.
    static func report(_ message: String) {
        FileHandle.standardError.write(Data("error\(isRoot ? "" : " (rank \(communicator.rank))"): \(message)\n".utf8))
    }
}

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
        64 a usage error (bad flag, value or model spec). Under mpirun, the job ends with the \
        failing rank's code.
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

    /// Threads per rank when not given: the cores divided by the ranks on this node.
    static var defaultThreads: Int {
        let local = Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? communicator.size
        return max(1, ProcessInfo.processInfo.activeProcessorCount / max(local, 1))
    }

    /// Prints on rank 0 only.
    static func say(_ line: String) {
        guard isRoot else { return }
        print(line)
        fflush(stdout)
    }

    /// Runs `body`; on an error prints one line and ends every rank with a non-zero code.
    /// Ranks other than 0 wait a moment first, so that an error every rank hits is printed
    /// once (by rank 0, whose abort ends the others) rather than N times.
    static func run(_ body: () throws -> Void) throws {
        do {
            try body()
            communicator.finalize()
        } catch {
            let message = String(describing: error)
            // Bad flags and model specs are usage errors, as ArgumentParser's own are.
            let code: Int32
            switch error {
            case is UsageError, EngineError.invalidModel: code = 64
            default: code = 1
            }
            if communicator.size > 1 {
                if !isRoot { usleep(500_000) }
                FileHandle.standardError.write(Data("error\(isRoot ? "" : " (rank \(communicator.rank))"): \(message)\n".utf8))
                communicator.abort(code: code)
            }
            FileHandle.standardError.write(Data("error: \(message)\n".utf8))
            throw ExitCode(code)
        }
    }
}

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

    /// Ranks of this job on this node, which share its memory and cores.
    static var ranksOnThisNode: Int { (communicator as? MPICommunicator)?.ranksOnThisNode ?? 1 }

    /// Threads per rank when not given: the cores divided by the ranks on this node.
    static var defaultThreads: Int {
        max(1, ProcessInfo.processInfo.activeProcessorCount / ranksOnThisNode)
    }

    /// Prints on rank 0 only.
    static func say(_ line: String) {
        guard isRoot else { return }
        print(line)
        fflush(stdout)
    }

    /// Runs `body`; on an error prints one line and ends every rank with a non-zero code. An
    /// `AgreedError` is known to every rank: its reporting rank prints it and all exit with its
    /// code. Any other error is this rank's alone: it prints it and ends the job with MPI_Abort.
    static func run(_ body: () throws -> Void) throws {
        do {
            try body()
            communicator.finalize()
        } catch let agreed as AgreedError {
            if communicator.rank == agreed.reportingRank, let error = agreed.underlying { report(error) }
            communicator.finalize()
            throw ExitCode(agreed.code)
        } catch {
            report(error)
            if communicator.size > 1 { communicator.abort(code: ExitStatus.of(error)) }
            throw ExitCode(ExitStatus.of(error))
        }
    }

    /// One line on standard error, naming the rank under mpirun unless it is rank 0, and
    /// settings by the flags that set them.
    static func report(_ error: Error) {
        let message = (error as? InvalidSetting)?.message(naming: Train.flag) ?? String(describing: error)
        FileHandle.standardError.write(Data("error\(isRoot ? "" : " (rank \(communicator.rank))"): \(message)\n".utf8))
    }
}

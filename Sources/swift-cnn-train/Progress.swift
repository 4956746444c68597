import DistributedTraining
import Engine
import Foundation

/// What rank 0 shows of a run: a progress line, redrawn in place on a terminal and a plain line
/// every few seconds in a batch log; a line per test evaluation; and the metrics file.
final class Progress: TrainingObserver {
    let total: Int
    let epochs: Int
    let batchSize: Int
    /// Steps between step records in the metrics file.
    let logEvery: Int
    let metrics: MetricsLog?
    let learningRate: (Int) -> Float
    let start = Date()
    var lastPrint = Date()
    // Under mpirun a rank's stdout may be a pty even when the job's output goes to a log: plain lines there.
    let isTerminal = isatty(STDOUT_FILENO) != 0 && !MPICommunicator.launchedByMPI
    var images = 0
    /// Time spent outside training steps (evaluation, checkpoints), left out of images/s.
    var pausedSeconds = 0.0
    var pauseStart: Date?

    init(total: Int, epochs: Int, batchSize: Int, logEvery: Int, metrics: MetricsLog?, learningRate: @escaping (Int) -> Float) {
        (self.total, self.epochs, self.batchSize, self.logEvery) = (total, epochs, batchSize, logEvery)
        self.metrics = metrics
        self.learningRate = learningRate
    }

    var elapsed: Double { Date().timeIntervalSince(start) }
    var imagesPerSecond: Double { Double(images) / max(elapsed - pausedSeconds, 1e-9) }

    /// The JSON-lines record shared by step and epoch entries.
    func record(_ result: StepResult, kind: String) -> [String: Any] {
        ["kind": kind, "step": result.step + 1, "epoch": result.epoch + 1, "loss": Double(result.loss),
         "accuracy": result.accuracy, "images_per_second": imagesPerSecond, "lr": Double(learningRate(result.step)),
         "elapsed_seconds": elapsed]
    }

    func stepEnded(_ result: StepResult) throws {
        images += batchSize
        guard Job.isRoot else { return }
        // By step, not by the clock: the same records for any machine and rank count.
        if let metrics, result.step == 0 || (result.step + 1) % logEvery == 0 {
            try metrics.append(record(result, kind: "step"))
        }
        if result.stopRequested { return clear() }
        let now = Date()
        guard now.timeIntervalSince(lastPrint) >= (isTerminal ? 0.2 : 5) else { return }
        lastPrint = now
        let done = result.step + 1
        let eta = Double(total - done) * (elapsed - pausedSeconds) / Double(done)
        let line = "epoch \(result.epoch + 1) step \(done)/\(total) loss \(String(format: "%.4f", result.loss)) acc \(String(format: "%.2f", 100 * result.accuracy))% \(String(format: "%.0f", imagesPerSecond)) images/s ETA \(Int(eta))s"
        if isTerminal {
            print("\r\u{1B}[K" + line, terminator: "")
        } else {
            print(line)
        }
        fflush(stdout)
    }

    func evaluated(after result: StepResult, trainLoss: Double, validation: EvaluationResult?, test: EvaluationResult,
                   partial: Bool) throws {
        let label = partial ? "step \(result.step + 1) (epoch \(result.epoch + 1), partial)" : "epoch \(result.epoch + 1)/\(epochs)"
        let validated = validation.map { ", validation loss \(String(format: "%.4f", $0.loss)), validation accuracy \(String(format: "%.2f", 100 * $0.accuracy))%" } ?? ""
        Job.say("\(label): train loss \(String(format: "%.4f", trainLoss))\(validated), test loss \(String(format: "%.4f", test.loss)), test accuracy \(String(format: "%.2f", 100 * test.accuracy))%, \(String(format: "%.0f", imagesPerSecond)) images/s")
        guard Job.isRoot, let metrics else { return }
        var entry = record(result, kind: "epoch")
        entry["train_loss"] = trainLoss
        if let validation {
            entry["validation_loss"] = Double(validation.loss)
            entry["validation_accuracy"] = validation.accuracy
        }
        entry["test_loss"] = Double(test.loss)
        entry["test_accuracy"] = test.accuracy
        try metrics.append(entry)
    }

    func pauseBegan() {
        clear()
        pauseStart = Date()
    }

    func pauseEnded() {
        pausedSeconds += pauseStart.map { Date().timeIntervalSince($0) } ?? 0
        pauseStart = nil
    }

    /// Removes the redrawn line before other output.
    func clear() {
        if isTerminal && Job.isRoot {
            print("\r\u{1B}[K", terminator: "")
        }
    }
}

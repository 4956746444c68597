import ArgumentParser
import DistributedTraining
import Engine
import Foundation

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a checkpoint on a data split: accuracy, per-class accuracy and the confusion matrix.",
        discussion: """
        Examples:
          swift-cnn-train evaluate --checkpoint runs/checkpoint-000004685.scnn
          mpirun -n 2 swift-cnn-train evaluate --checkpoint ckpt.scnn --split train
        """)

    @Option(help: "The checkpoint file to evaluate.")
    var checkpoint: String

    @Option(help: "Data directory (as for train).")
    var data = "/usr/share/datasets/fashion-mnist"

    @Option(help: "Which split: test, train (the samples trained on) or validation (held out by the checkpoint's --val-split).")
    var split = Split.test

    @Option(parsing: .unconditional, help: "Threads per rank (default: cores ÷ ranks on the node).")
    var threads: Int?

    func run() throws {
        try Job.run {
            let (checkpoint, network) = try loadCheckpoint(path: self.checkpoint)
            let dataset = try loadSplit(split, of: data, for: network, manifest: checkpoint.manifest)
            var parameters = checkpoint.parameters, buffers = checkpoint.buffers + [0]
            let communicator = Job.communicator
            let m = checkpoint.manifest
            let result = try evaluate(
                network: network, parameters: &parameters, buffers: &buffers, dataset: dataset, chunkSize: m.hyperparameters.chunkSize,
                hyper: m.hyperparameters.layers,
                executor: ParallelExecutor(threads: threads ?? Job.defaultThreads), communicator: communicator,
                reducer: ExactReducer(communicator: communicator))
            Job.say("checkpoint \(self.checkpoint) (step \(m.step), model \(m.model))")
            Job.say("\(split): \(result.count) samples, loss \(String(format: "%.4f", result.loss)), accuracy \(String(format: "%.2f", 100 * result.accuracy))%")
            Job.say("per-class accuracy: " + result.classAccuracy.enumerated().map { "\($0.offset): " + ($0.element.map { String(format: "%.2f%%", 100 * $0) } ?? "n/a") }.joined(separator: ", "))
            Job.say("confusion matrix (rows: actual, columns: predicted):")
            let width = max(5, String(result.confusion.flatMap { $0 }.max() ?? 0).count + 1)
            Job.say("     " + (0..<network.classes).map { String($0).leftPadded(width) }.joined())
            for (c, row) in result.confusion.enumerated() {
                Job.say(String(c).leftPadded(4) + " " + row.map { String($0).leftPadded(width) }.joined())
            }
        }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}

/// A data set's part that `evaluate` and `predict` read.
enum Split: String, CaseIterable, ExpressibleByArgument {
    case test, train, validation
}

/// The `split` of the data at `location` as the checkpoint's run saw it — the validation
/// split held out by its seed, inputs normalised by its statistics — checked to fit its model.
func loadSplit(_ split: Split, of location: String, for network: Network, manifest: CheckpointManifest) throws -> Dataset {
    let h = manifest.hyperparameters
    let splits = try DataSplits.load(location, seed: h.seed, classes: network.classes)
        .holdingOut(h.data.validationSamples, seed: h.seed).normalized(by: manifest.normalization)
    let chosen: Dataset
    switch split {
    case .test: chosen = splits.test
    case .train: chosen = splits.train
    case .validation:
        guard let validation = splits.validation else {
            throw UsageError("--split validation: the checkpoint was trained without --val-split, so it has no validation split")
        }
        chosen = validation
    }
    let dataset = chosen
    guard dataset.shape == network.inputShape else {
        throw EngineError.invalidData("the data (\(dataset.shape.map(String.init).joined(separator: "×"))) does not fit the checkpoint's model (\(network.inputShape.map(String.init).joined(separator: "×")))")
    }
    return dataset
}

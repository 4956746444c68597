import ArgumentParser
import DistributedTraining
import Engine
import Foundation

/// Options shared by every subcommand that builds a model and reads data.
struct ModelOptions: ParsableArguments {
    @Option(help: "Data: a directory of MNIST-format IDX files (plain or .gz) or CIFAR-10 binary batches, or synthetic[:TRAIN[:TEST]].")
    var data = "/usr/share/datasets/fashion-mnist"

    @Option(help: "A preset (\(ModelSpec.presets.map(\.name).joined(separator: ", "))) or a spec such as conv32k3-relu-maxpool2-fc. See `inspect --help`.")
    var model = "seed-cnn"
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model; prints per-epoch test accuracy and the final parameter digest.",
        discussion: """
        The weights after every step depend only on the seed, model, data, hyperparameters, \
        --batch-size and --chunk-size — not on the number of ranks or --threads.

        Examples:
          swift-cnn-train train --epochs 5
          mpirun -n 4 swift-cnn-train train --model seed-cnn-bn --batch-size 128
        """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Epochs to train.")
    var epochs = 5

    @Option(help: "Stop after this global step, counted from the start of training.")
    var maxSteps: Int?

    @Option(help: "Global batch size B (over all ranks).")
    var batchSize = 64

    @Option(help: "Chunk size C: the unit of work; must divide the batch size. Part of what determines the weights.")
    var chunkSize = 8

    @Option(help: "Learning rate.")
    var lr: Float = 0.05

    @Option(help: "SGD momentum.")
    var momentum: Float = 0.9

    @Option(help: "L2 weight decay (added to gradients, as torch.optim.SGD).")
    var weightDecay: Float = 0

    @Flag(help: "Use Nesterov momentum.")
    var nesterov = false

    @Option(help: "Seed for initialisation and the sample order.")
    var seed: UInt64 = 1

    @Option(help: "Weight initialisation: default (PyTorch's), xavier or he.")
    var `init`: String = "default"

    @Option(help: "Batch-norm running-statistics momentum.")
    var bnMomentum: Float = 0.1

    @Option(help: "Batch-norm epsilon.")
    var bnEps: Float = 1e-5

    @Option(help: "Threads per rank (default: cores ÷ ranks on the node). Does not change the results.")
    var threads: Int?

    func validate() throws {
        guard InitScheme(rawValue: `init`) != nil else {
            throw ValidationError("--init must be one of default, xavier, he (got '\(`init`)')")
        }
    }

    var options: TrainingOptions {
        var o = TrainingOptions()
        o.seed = seed
        o.batchSize = batchSize
        o.chunkSize = chunkSize
        o.epochs = epochs
        o.maxSteps = maxSteps
        o.learningRate = lr
        o.optimizer = SGD(momentum: momentum, weightDecay: weightDecay, nesterov: nesterov)
        o.layer = LayerHyperparameters(batchNormMomentum: bnMomentum, batchNormEpsilon: bnEps)
        o.initScheme = InitScheme(rawValue: `init`)!
        o.threads = threads ?? Job.defaultThreads
        return o
    }

    func run() throws {
        try Job.run {
            let options = self.options
            let communicator = Job.communicator
            try options.validate(ranks: communicator.size)
            let spec = try ModelSpec(modelOptions.model)
            let data = try DataSplits.load(modelOptions.data, seed: options.seed)
            let network = try Network(spec: spec, inputShape: data.train.shape, classes: data.train.classes,
                                      initScheme: options.initScheme)
            let trainer = try Trainer(network: network, data: data, options: options, communicator: communicator)
            Job.say("model \(modelOptions.model) (\(network.parameterCount.formatted()) parameters); data \(data.train.count) train / \(data.test.count) test of \(data.train.shape.map(String.init).joined(separator: "×"))")
            Job.say("\(communicator.size) rank\(communicator.size == 1 ? "" : "s") × \(options.threads) thread\(options.threads == 1 ? "" : "s"); batch \(options.batchSize) = \(options.chunksPerBatch) chunks of \(options.chunkSize); \(trainer.stepsPerEpoch) steps per epoch, \(trainer.totalSteps) in all")
            let progress = Progress(total: trainer.totalSteps, batchSize: options.batchSize)
            var epochLoss = 0.0, epochSteps = 0
            while trainer.step < trainer.totalSteps {
                let result = try trainer.trainStep()
                epochLoss += Double(result.loss)
                epochSteps += 1
                progress.update(result)
                let epochDone = trainer.step % trainer.stepsPerEpoch == 0
                if epochDone || trainer.step == trainer.totalSteps {
                    progress.clear()
                    let test = try trainer.evaluate(data.test)
                    let label = epochDone ? "epoch \(result.epoch + 1)/\(options.epochs)" : "step \(trainer.step) (epoch \(result.epoch + 1), partial)"
                    Job.say("\(label): train loss \(String(format: "%.4f", epochLoss / Double(epochSteps))), test loss \(String(format: "%.4f", test.loss)), test accuracy \(String(format: "%.2f", 100 * test.accuracy))%, \(String(format: "%.0f", progress.imagesPerSecond)) images/s")
                    epochLoss = 0
                    epochSteps = 0
                }
            }
            Job.say("parameter digest: \(trainer.digest)")
        }
    }
}

/// Rank 0's progress line: redrawn in place on a terminal, a plain line every few seconds in
/// a batch log.
final class Progress {
    let total: Int
    let batchSize: Int
    let start = Date()
    var lastPrint = Date()
    let isTerminal = isatty(STDOUT_FILENO) != 0
    var images = 0

    init(total: Int, batchSize: Int) {
        self.total = total
        self.batchSize = batchSize
    }

    var imagesPerSecond: Double { Double(images) / max(Date().timeIntervalSince(start), 1e-9) }

    func update(_ result: StepResult) {
        images += batchSize
        guard Job.isRoot else { return }
        let now = Date()
        guard now.timeIntervalSince(lastPrint) >= (isTerminal ? 0.2 : 5) else { return }
        lastPrint = now
        let done = result.step + 1
        let eta = Double(total - done) * now.timeIntervalSince(start) / Double(done)
        let line = "epoch \(result.epoch + 1) step \(done)/\(total) loss \(String(format: "%.4f", result.loss)) acc \(String(format: "%.2f", 100 * result.accuracy))% \(String(format: "%.0f", imagesPerSecond)) images/s ETA \(Int(eta))s"
        if isTerminal {
            print("\r\u{1B}[K" + line, terminator: "")
        } else {
            print(line)
        }
        fflush(stdout)
    }

    func clear() {
        if isTerminal && Job.isRoot {
            print("\r\u{1B}[K", terminator: "")
        }
    }
}

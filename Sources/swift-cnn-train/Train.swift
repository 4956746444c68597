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

    @Option(help: "Learning-rate schedule: constant, step (×--lr-gamma every --lr-step-epochs epochs) or cosine (to 0 at the end of --epochs).")
    var lrSchedule = "cosine"

    @Option(help: "Warm the learning rate up linearly over this many steps.")
    var warmupSteps = 0

    @Option(help: "For --lr-schedule step: epochs between decays.")
    var lrStepEpochs = 2

    @Option(help: "For --lr-schedule step: the decay factor.")
    var lrGamma: Float = 0.1

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

    @Option(help: "Gradient reduction: exact (fixed point, the same bits for any rank count) or float (plain MPI_Allreduce overlapped with backward; faster, not reproducible across rank counts).")
    var reduction = "exact"

    @Option(help: "Every K steps, compare parameter digests across ranks and stop on divergence (0: never).")
    var checkReplicas = 0

    @Option(help: "Directory for checkpoints (written by rank 0). Without it, nothing is saved.")
    var checkpointDir: String?

    @Option(help: "Write a checkpoint every K steps (0: only at the end and on SIGTERM/SIGINT/SIGUSR1).")
    var checkpointEvery = 0

    @Option(help: "Keep the newest K checkpoints.")
    var keep = 3

    @Flag(help: "Continue from the newest valid checkpoint in --checkpoint-dir (start fresh if there is none).")
    var resume = false

    @Option(help: "Append JSON lines of metrics (per logged step and per epoch) to this file.")
    var metrics: String?

    @Option(help: "Seconds a rank may wait in one MPI collective for the others before it ends with an error naming the step, so that a lost host or a cut link stops the job instead of hanging it (0: wait forever). Must exceed the longest legitimate wait, such as rank 0 writing a checkpoint.")
    var collectiveTimeout: Double = 120

    func validate() throws {
        guard InitScheme(rawValue: `init`) != nil else {
            throw ValidationError("--init must be one of default, xavier, he (got '\(`init`)')")
        }
        guard LearningRateSchedule.Shape(rawValue: lrSchedule) != nil else {
            throw ValidationError("--lr-schedule must be constant, step or cosine (got '\(lrSchedule)')")
        }
        guard Reduction(rawValue: reduction) != nil else {
            throw ValidationError("--reduction must be exact or float (got '\(reduction)')")
        }
        if resume && checkpointDir == nil { throw ValidationError("--resume needs --checkpoint-dir DIR") }
        if checkpointEvery < 0 { throw ValidationError("--checkpoint-every must be 0 or more") }
        if keep < 1 { throw ValidationError("--keep must be at least 1") }
        if !(collectiveTimeout >= 0) || !collectiveTimeout.isFinite {
            throw ValidationError("--collective-timeout must be a number of seconds, or 0 to wait forever (got \(collectiveTimeout))")
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
        o.schedule.shape = LearningRateSchedule.Shape(rawValue: lrSchedule)!
        o.schedule.warmupSteps = warmupSteps
        o.schedule.stepEpochs = lrStepEpochs
        o.schedule.gamma = lrGamma
        o.optimizer = SGD(momentum: momentum, weightDecay: weightDecay, nesterov: nesterov)
        o.layer = LayerHyperparameters(batchNormMomentum: bnMomentum, batchNormEpsilon: bnEps)
        o.initScheme = InitScheme(rawValue: `init`)!
        o.threads = threads ?? Job.defaultThreads
        o.reduction = Reduction(rawValue: reduction)!
        o.checkReplicasEvery = checkReplicas
        return o
    }

    func run() throws {
        try Job.run {
            let options = self.options
            let communicator = Job.communicator
            try options.validate(ranks: communicator.size)
            if communicator.size > 1 && collectiveTimeout > 0 {
                CollectiveWatchdog.install(timeout: collectiveTimeout, rank: communicator.rank)
            }
            let spec = try ModelSpec(modelOptions.model)
            let store = checkpointDir.map { CheckpointStore(directory: $0, keep: keep) }
            if Job.isRoot { try store?.prepare() }
            let data = try DataSplits.load(modelOptions.data, seed: options.seed)
            let network = try Network(spec: spec, inputShape: data.train.shape, classes: data.train.classes,
                                      initScheme: options.initScheme)
            let trainer = try Trainer(network: network, data: data, options: options, communicator: communicator)
            let metricsLog = try metrics.map { try MetricsLog(path: $0) }
            StopSignal.install()
            if resume, let store { try resumeTraining(trainer, store: store, spec: spec) }
            Job.say("model \(modelOptions.model) (\(network.parameterCount.formatted()) parameters); data \(data.train.count) train / \(data.test.count) test of \(data.train.shape.map(String.init).joined(separator: "×"))")
            Job.say("\(communicator.size) rank\(communicator.size == 1 ? "" : "s") × \(options.threads) thread\(options.threads == 1 ? "" : "s"); batch \(options.batchSize) = \(options.chunksPerBatch) chunks of \(options.chunkSize); lr \(options.learningRate) \(options.schedule.summary); \(trainer.stepsPerEpoch) steps per epoch, \(trainer.totalSteps) in all")
            let progress = Progress(total: trainer.totalSteps, batchSize: options.batchSize, metrics: metricsLog,
                                    learningRate: trainer.learningRate(atStep:))
            var epochLoss = 0.0, epochSteps = 0
            while trainer.step < trainer.totalSteps {
                let result = try trainer.trainStep()
                epochLoss += Double(result.loss)
                epochSteps += 1
                try progress.update(result)
                if result.stopRequested {
                    progress.clear()
                    let path = try saveCheckpoint(trainer, store: store)
                    Job.say("stopped by \(StopSignal.name) after step \(trainer.step)" + (path.map { "; checkpoint \($0); rerun with --resume to continue" } ?? "; no --checkpoint-dir, nothing saved"))
                    Foundation.exit(0)
                }
                let epochDone = trainer.step % trainer.stepsPerEpoch == 0
                if epochDone || trainer.step == trainer.totalSteps {
                    progress.clear()
                    let test = try progress.excluded { try trainer.evaluate(data.test) }
                    let trainLoss = epochLoss / Double(epochSteps)
                    let label = epochDone ? "epoch \(result.epoch + 1)/\(options.epochs)" : "step \(trainer.step) (epoch \(result.epoch + 1), partial)"
                    Job.say("\(label): train loss \(String(format: "%.4f", trainLoss)), test loss \(String(format: "%.4f", test.loss)), test accuracy \(String(format: "%.2f", 100 * test.accuracy))%, \(String(format: "%.0f", progress.imagesPerSecond)) images/s")
                    try progress.epochEnded(result, trainLoss: trainLoss, test: test)
                    epochLoss = 0
                    epochSteps = 0
                }
                if let store, checkpointEvery > 0, trainer.step % checkpointEvery == 0, trainer.step < trainer.totalSteps {
                    _ = try progress.excluded { try saveCheckpoint(trainer, store: store) }
                }
            }
            if let path = try saveCheckpoint(trainer, store: store) { Job.say("checkpoint: \(path)") }
            Job.say("parameter digest: \(trainer.digest)")
        }
    }

    /// Rank 0 writes; every rank then learns that it succeeded, so none exits before the file is safe.
    func saveCheckpoint(_ trainer: Trainer, store: CheckpointStore?) throws -> String? {
        guard let store else { return nil }
        var path: String?
        var failure: Error?
        if Job.isRoot {
            do { path = try store.write(try trainer.checkpoint().encoded(), step: trainer.step) } catch { failure = error }
        }
        var ok: [Int64] = [failure == nil ? 0 : 1]
        try Job.communicator.allreduceSum(&ok)
        if let failure { throw failure }
        if ok[0] != 0 { throw EngineError.invalidCheckpoint("rank 0 could not write the checkpoint") }
        return path
    }

    func resumeTraining(_ trainer: Trainer, store: CheckpointStore, spec: ModelSpec) throws {
        guard let found = store.newestValid(load: { try loadCheckpoint(path: $0).0 }) else {
            Job.say("no valid checkpoint in \(store.directory); starting from step 0")
            return
        }
        found.skipped.forEach(Job.say)
        try trainer.options.checkResumable(found.checkpoint.manifest, model: spec, source: found.path)
        try trainer.restore(found.checkpoint)
        Job.say("resumed from \(found.path) at step \(trainer.step)")
    }
}

/// Rank 0's progress line: redrawn in place on a terminal, a plain line every few seconds in
/// a batch log.
final class Progress {
    let total: Int
    let batchSize: Int
    let metrics: MetricsLog?
    let learningRate: (Int) -> Float
    let start = Date()
    var lastPrint = Date()
    var lastLog = Date.distantPast
    // Under mpirun a rank's stdout may be a pty even when the job's output goes to a log: plain lines there.
    let isTerminal = isatty(STDOUT_FILENO) != 0 && !MPICommunicator.launchedByMPI
    var images = 0
    /// Time spent outside training steps (evaluation, checkpoints), left out of images/s.
    var excludedSeconds = 0.0

    init(total: Int, batchSize: Int, metrics: MetricsLog?, learningRate: @escaping (Int) -> Float) {
        self.total = total
        self.batchSize = batchSize
        self.metrics = metrics
        self.learningRate = learningRate
    }

    var elapsed: Double { Date().timeIntervalSince(start) }

    /// The JSON-lines record shared by step and epoch entries.
    func record(_ result: StepResult, kind: String) -> [String: Any] {
        ["kind": kind, "step": result.step + 1, "epoch": result.epoch + 1, "loss": Double(result.loss),
         "accuracy": result.accuracy, "images_per_second": imagesPerSecond, "lr": Double(learningRate(result.step)),
         "elapsed_seconds": elapsed]
    }

    func epochEnded(_ result: StepResult, trainLoss: Double, test: EvaluationResult) throws {
        guard Job.isRoot, let metrics else { return }
        var entry = record(result, kind: "epoch")
        entry["train_loss"] = trainLoss
        entry["test_loss"] = Double(test.loss)
        entry["test_accuracy"] = test.accuracy
        try metrics.append(entry)
    }

    var imagesPerSecond: Double { Double(images) / max(Date().timeIntervalSince(start) - excludedSeconds, 1e-9) }

    func excluded<T>(_ body: () throws -> T) rethrows -> T {
        let begin = Date()
        defer { excludedSeconds += Date().timeIntervalSince(begin) }
        return try body()
    }

    func update(_ result: StepResult) throws {
        images += batchSize
        guard Job.isRoot else { return }
        let now = Date()
        if let metrics, now.timeIntervalSince(lastLog) >= 1 || result.step == 0 {
            lastLog = now
            try metrics.append(record(result, kind: "step"))
        }
        guard now.timeIntervalSince(lastPrint) >= (isTerminal ? 0.2 : 5) else { return }
        lastPrint = now
        let done = result.step + 1
        let eta = Double(total - done) * (now.timeIntervalSince(start) - excludedSeconds) / Double(done)
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

/// `--metrics FILE`: one JSON object per line, appended (rank 0 only). An existing file must
/// be empty or start with a JSON object, so that a wrong path (a checkpoint) is refused rather
/// than appended to.
final class MetricsLog {
    let file: OutputFile.Appender?

    init(path: String) throws {
        guard Job.isRoot else {
            file = nil
            return
        }
        var info = stat()
        if stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size > 0 {
            let first = try? FileHandle(forReadingFrom: URL(fileURLWithPath: path)).read(upToCount: 1)
            guard first == Data("{".utf8) else {
                throw EngineError.output("'--metrics \(path)' is not a metrics file: it does not start with a JSON object ('{')")
            }
        }
        file = try OutputFile(path).openForAppending()
    }

    func append(_ entry: [String: Any]) throws {
        guard let file, let json = try? JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys]) else { return }
        try file.append(Array(json) + Array("\n".utf8))
    }
}

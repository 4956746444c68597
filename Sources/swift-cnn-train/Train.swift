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

    @Option(parsing: .unconditional, help: "Classes: labels must lie in 0 … N−1 (Fashion-MNIST, MNIST and CIFAR-10 have 10).")
    var classes = DataSplits.defaultClasses
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model; prints per-epoch test accuracy and the final parameter digest.",
        discussion: """
        The weights after every step depend only on the seed, model, data, hyperparameters, \
        --batch-size and --chunk-size — not on the number of ranks or --threads.

        Before training, every rank checks that all ranks were started with the same settings \
        and data, and that the run fits in memory.

        Exit codes: 0 finished; 1 runtime error; 64 bad flag, value, model spec or mismatched \
        ranks; 75 stopped by SIGTERM, SIGINT or SIGUSR1 (after writing a checkpoint, with \
        --checkpoint-dir): run again with --resume to continue.

        Examples:
          swift-cnn-train train --epochs 5
          mpirun -n 4 swift-cnn-train train --model seed-cnn-bn --batch-size 128
        """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(parsing: .unconditional, help: "Epochs to train.")
    var epochs = 5

    @Option(parsing: .unconditional, help: "Stop after this global step, counted from the start of training.")
    var maxSteps: Int?

    @Option(parsing: .unconditional, help: "Global batch size B (over all ranks).")
    var batchSize = 64

    @Option(parsing: .unconditional, help: "Chunk size C: the unit of work; must divide the batch size. Part of what determines the weights.")
    var chunkSize = 8

    @Option(parsing: .unconditional, help: "Learning rate.")
    var lr: Float = 0.05

    @Option(help: "Learning-rate schedule: constant, step (×--lr-gamma every --lr-step-epochs epochs) or cosine (to 0 at the end of --epochs).")
    var lrSchedule = "cosine"

    @Option(parsing: .unconditional, help: "Warm the learning rate up linearly over this many steps.")
    var warmupSteps = 0

    @Option(parsing: .unconditional, help: "For --lr-schedule step: epochs between decays.")
    var lrStepEpochs = 2

    @Option(parsing: .unconditional, help: "For --lr-schedule step: the decay factor.")
    var lrGamma: Float = 0.1

    @Option(parsing: .unconditional, help: "SGD momentum.")
    var momentum: Float = 0.9

    @Option(parsing: .unconditional, help: "L2 weight decay (added to gradients, as torch.optim.SGD).")
    var weightDecay: Float = 0

    @Flag(help: "Use Nesterov momentum.")
    var nesterov = false

    @Option(parsing: .unconditional, help: "Seed for initialisation and the sample order.")
    var seed: UInt64 = 1

    @Option(help: "Weight initialisation: default (PyTorch's), xavier or he.")
    var `init`: String = "default"

    @Option(parsing: .unconditional, help: "Batch-norm running-statistics momentum.")
    var bnMomentum: Float = 0.1

    @Option(parsing: .unconditional, help: "Batch-norm epsilon.")
    var bnEps: Float = 1e-5

    @Option(parsing: .unconditional, help: "Threads per rank (default: cores ÷ ranks on the node). Does not change the results.")
    var threads: Int?

    @Option(help: "Gradient reduction: exact (fixed point, the same bits for any rank count) or float (plain MPI_Allreduce overlapped with backward; faster, not reproducible across rank counts).")
    var reduction = "exact"

    @Option(parsing: .unconditional, help: "Every K steps, compare parameter digests across ranks and stop on divergence (0: never).")
    var checkReplicas = 0

    @Option(help: "Directory for checkpoints (written by rank 0). Without it, nothing is saved.")
    var checkpointDir: String?

    @Option(parsing: .unconditional, help: "Write a checkpoint every K steps (0: only at the end and on SIGTERM/SIGINT/SIGUSR1).")
    var checkpointEvery = 0

    @Option(parsing: .unconditional, help: "Keep the newest K checkpoints.")
    var keep = 3

    @Flag(help: "Continue from the newest valid checkpoint in --checkpoint-dir, which must exist; with none there yet, start from step 0. Checkpoints that do not load are listed with the reason.")
    var resume = false

    @Flag(help: "With --resume: start from step 0 also when --checkpoint-dir does not exist or holds only checkpoints that do not load (instead of stopping with an error).")
    var allowFreshStart = false

    @Option(help: "Append JSON lines of metrics (per logged step and per epoch) to this file.")
    var metrics: String?

    @Option(parsing: .unconditional, help: "Log a step to --metrics every N steps (and the first step).")
    var logEvery = 50

    @Option(parsing: .unconditional, help: "Seconds a rank may wait in one MPI collective for the others before it ends with an error naming the step, so that a lost host or a cut link stops the job instead of hanging it (0: wait forever). Must exceed the longest legitimate wait, such as rank 0 writing a checkpoint.")
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
        if allowFreshStart && !resume { throw ValidationError("--allow-fresh-start only applies with --resume") }
        if checkpointEvery < 0 { throw ValidationError("--checkpoint-every must be 0 or more (got \(checkpointEvery))") }
        if keep < 1 { throw ValidationError("--keep must be at least 1 (got \(keep))") }
        if logEvery < 1 { throw ValidationError("--log-every must be at least 1 (got \(logEvery))") }
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

    /// What each rank prepares on its own before the ranks agree to train.
    struct Preparation {
        let network: Network
        let data: DataSplits
        let metricsLog: MetricsLog?
        let resumeFrom: (checkpoint: Checkpoint, path: String)?
        /// (name, value) pairs every rank must share.
        let settings: [(name: String, value: String)]
    }

    func run() throws {
        try Job.run {
            let options = self.options
            let communicator = Job.communicator
            if communicator.size > 1 && collectiveTimeout > 0 {
                CollectiveWatchdog.install(timeout: collectiveTimeout, rank: communicator.rank)
            }
            let store = checkpointDir.map { CheckpointStore(directory: $0, keep: keep) }
            let prepared = Result { try prepare(options, store: store) }
            try RankAgreement.agree(prepared.map(\.settings), communicator: communicator, exitCode: Job.exitCode(for:),
                                    mismatchCode: Job.usageErrorCode)
            let preparation = try prepared.get()
            let (network, data) = (preparation.network, preparation.data)
            let trainer = try Job.agreed { try Trainer(network: network, data: data, options: options, communicator: communicator) }
            StopSignal.install()
            if let found = preparation.resumeFrom {
                try Job.agreed { try trainer.restore(found.checkpoint) }
                Job.say("resumed from \(found.path) at step \(trainer.step)")
            }
            Job.say("model \(modelOptions.model) (\(network.parameterCount.formatted()) parameters); data \(data.train.count) train / \(data.test.count) test of \(data.train.shape.map(String.init).joined(separator: "×")), \(data.train.classes) classes")
            Job.say("\(communicator.size) rank\(communicator.size == 1 ? "" : "s") × \(options.threads) thread\(options.threads == 1 ? "" : "s"); batch \(options.batchSize) = \(options.chunksPerBatch) chunks of \(options.chunkSize); lr \(options.learningRate) \(options.schedule.summary); \(trainer.stepsPerEpoch) steps per epoch, \(trainer.totalSteps) in all")
            let progress = Progress(total: trainer.totalSteps, batchSize: options.batchSize, logEvery: logEvery,
                                    metrics: preparation.metricsLog, learningRate: trainer.learningRate(atStep:))
            var epochLoss = 0.0, epochSteps = 0
            while trainer.step < trainer.totalSteps {
                let result = try Job.agreed { try trainer.trainStep() }
                epochLoss += Double(result.loss)
                epochSteps += 1
                try progress.update(result)
                if result.stopRequested {
                    progress.clear()
                    let path = try saveCheckpoint(trainer, store: store)
                    Job.say("stopped by \(StopSignal.name) after step \(trainer.step)" + (path.map { "; checkpoint \($0); rerun with --resume to continue" } ?? "; no --checkpoint-dir, nothing saved"))
                    // Not MPI_Finalize: after a signal it can hang (docs/architecture.md).
                    Foundation.exit(Job.interruptedCode)
                }
                let epochDone = trainer.step % trainer.stepsPerEpoch == 0
                if epochDone || trainer.step == trainer.totalSteps {
                    progress.clear()
                    let test = try progress.excluded { try Job.agreed { try trainer.evaluate(data.test) } }
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
                TestHold.reached(.step, step: trainer.step, rank: communicator.rank)
            }
            if let path = try saveCheckpoint(trainer, store: store) { Job.say("checkpoint: \(path)") }
            Job.say("parameter digest: \(trainer.digest)")
        }
    }

    /// This rank's part of the start-up: flags, model, data, memory, metrics file, checkpoint
    /// to resume. Touches no collective, so that a failure here reaches the agreement.
    func prepare(_ options: TrainingOptions, store: CheckpointStore?) throws -> Preparation {
        let communicator = Job.communicator
        try options.validate(ranks: communicator.size)
        let spec = try ModelSpec(modelOptions.model)
        let data = try DataSplits.load(modelOptions.data, seed: options.seed, classes: modelOptions.classes)
        let network = try Network(spec: spec, inputShape: data.train.shape, classes: data.train.classes,
                                  initScheme: options.initScheme)
        try Trainer.checkMemory(network: network, options: options, rank: communicator.rank,
                                ranks: communicator.size, ranksOnThisNode: Job.ranksOnThisNode)
        let resumeFrom = try store.flatMap { resume ? try findCheckpoint(in: $0, options: options, spec: spec) : nil }
        if Job.isRoot { try store?.prepare() }
        let metricsLog = try metrics.map { try MetricsLog(path: $0) }
        let settings: [(name: String, value: String)] =
            [("version", SwiftCNNTrain.configuration.version), ("data", data.identity)] + options.weightSettings(network: network)
            + [("--max-steps", maxSteps.map(String.init) ?? "none"), ("--reduction", reduction),
               ("--check-replicas", "\(checkReplicas)"), ("--checkpoint-every", "\(checkpointEvery)"),
               ("the resumed checkpoint's step", resumeFrom.map { "\($0.checkpoint.manifest.step)" } ?? "none (from step 0)")]
        return Preparation(network: network, data: data, metricsLog: metricsLog, resumeFrom: resumeFrom, settings: settings)
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
        if ok[0] != 0 {
            throw AgreedError(message: failure.map { String(describing: $0) } ?? "", reportingRank: 0,
                              code: failure.map(Job.exitCode(for:)) ?? 1)
        }
        return path
    }

    /// The newest checkpoint that loads and fits these options, every one skipped said with
    /// its reason; nil to start from step 0 (an empty directory, or --allow-fresh-start).
    func findCheckpoint(in store: CheckpointStore, options: TrainingOptions, spec: ModelSpec) throws
        -> (checkpoint: Checkpoint, path: String)? {
        guard FileManager.default.fileExists(atPath: store.directory) else {
            guard allowFreshStart else {
                throw UsageError("--resume: checkpoint directory '\(store.directory)' does not exist; check the path, or add --allow-fresh-start to start from step 0")
            }
            Job.say("no checkpoint directory '\(store.directory)' yet; starting from step 0")
            return nil
        }
        let search = store.newestValid(load: { try loadCheckpoint(path: $0).0 })
        search.skipped.forEach(Job.say)
        guard let found = search.found else {
            if !search.skipped.isEmpty && !allowFreshStart {
                throw EngineError.invalidCheckpoint("--resume: no checkpoint in '\(store.directory)' loads (\(search.skipped.count) skipped, reasons above); move them away, or add --allow-fresh-start to start from step 0")
            }
            Job.say("no valid checkpoint in \(store.directory); starting from step 0")
            return nil
        }
        try options.checkResumable(found.checkpoint.manifest, model: spec, source: found.path)
        return found
    }
}

/// Rank 0's progress line: redrawn in place on a terminal, a plain line every few seconds in
/// a batch log.
final class Progress {
    let total: Int
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
    var excludedSeconds = 0.0

    init(total: Int, batchSize: Int, logEvery: Int, metrics: MetricsLog?, learningRate: @escaping (Int) -> Float) {
        self.total = total
        self.batchSize = batchSize
        self.logEvery = logEvery
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
        // By step, not by the clock: the same records for any machine and rank count.
        if let metrics, result.step == 0 || (result.step + 1) % logEvery == 0 {
            try metrics.append(record(result, kind: "step"))
        }
        let now = Date()
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

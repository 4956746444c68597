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

    /// The defaults of every hyperparameter flag: `Hyperparameters`' own.
    static let defaults = Hyperparameters()

    @Option(parsing: .unconditional, help: "Epochs to train.")
    var epochs = defaults.epochs

    @Option(parsing: .unconditional, help: "Stop after this global step, counted from the start of training.")
    var maxSteps: Int?

    @Option(parsing: .unconditional, help: "Global batch size B (over all ranks).")
    var batchSize = defaults.batchSize

    @Option(parsing: .unconditional, help: "Chunk size C: the unit of work; must divide the batch size. Part of what determines the weights.")
    var chunkSize = defaults.chunkSize

    @Option(parsing: .unconditional, help: "Learning rate.")
    var lr = defaults.learningRate

    @Option(help: "Learning-rate schedule: constant, step (×--lr-gamma every --lr-step-epochs epochs) or cosine (to 0 at the end of --epochs).")
    var lrSchedule = defaults.schedule.shape

    @Option(parsing: .unconditional, help: "Warm the learning rate up linearly over this many steps.")
    var warmupSteps = defaults.schedule.warmupSteps

    @Option(parsing: .unconditional, help: "For --lr-schedule step: epochs between decays.")
    var lrStepEpochs = defaults.schedule.stepEpochs

    @Option(parsing: .unconditional, help: "For --lr-schedule step: the decay factor.")
    var lrGamma = defaults.schedule.gamma

    @Option(help: "Optimizer: sgd, adam or adamw, with PyTorch's update rules (torch.optim.SGD, Adam, AdamW).")
    var optimizer = defaults.optimizer.kind

    @Option(parsing: .unconditional, help: "For --optimizer sgd: momentum.")
    var momentum = defaults.optimizer.momentum

    @Option(parsing: .unconditional, help: "Weight decay: L2 added to the gradients for sgd and adam; decoupled (p ← p·(1 − lr·decay)) for adamw.")
    var weightDecay = defaults.optimizer.weightDecay

    @Flag(help: "For --optimizer sgd: use Nesterov momentum.")
    var nesterov = defaults.optimizer.nesterov

    @Option(parsing: .unconditional, help: "For --optimizer adam and adamw: the moments' decay rates β1,β2, each in [0, 1).")
    var betas = Betas(beta1: defaults.optimizer.beta1, beta2: defaults.optimizer.beta2)

    @Option(parsing: .unconditional, help: "For --optimizer adam and adamw: the term added to the denominator.")
    var eps = defaults.optimizer.epsilon

    @Option(parsing: .unconditional, help: "Scale the gradient so that its global L2 norm is at most MAX, as torch.nn.utils.clip_grad_norm_ (0: off).")
    var clipGradNorm = defaults.clipGradNorm

    @Option(parsing: .unconditional, help: "Label smoothing ε in [0, 1] of the training loss, as F.cross_entropy(label_smoothing=ε); also for models ending in logsoftmax (see README). Test losses stay unsmoothed.")
    var labelSmoothing = defaults.labelSmoothing

    @Option(parsing: .unconditional, help: "Seed for initialisation and the sample order.")
    var seed = defaults.seed

    @Option(help: "Weight initialisation: default (PyTorch's), xavier or he.")
    var `init` = defaults.initialization

    @Option(parsing: .unconditional, help: "Batch-norm running-statistics momentum.")
    var bnMomentum = defaults.layers.batchNormMomentum

    @Option(parsing: .unconditional, help: "Batch-norm epsilon.")
    var bnEps = defaults.layers.batchNormEpsilon

    @Option(help: ArgumentHelp("Random transforms of each training sample, as its batch is formed (never in evaluation): a comma-separated list of crop<P> (zero-pad P pixels, crop back at random), flip (mirror left-right with probability 0.5; not for digits or letters) and erase (torchvision's RandomErasing: p 0.5, scale 0.02–0.33, ratio 0.3–3.3, value 0), or none. Draws depend on the seed, epoch and sample only. (default: none)", valueName: "list"),
            transform: Augmentation.init)
    var augment = defaults.data.augmentation

    @Flag(help: "Normalise inputs per channel by the training samples' mean and standard deviation (stored in checkpoints; evaluate, predict and export use them).")
    var normalize = defaults.data.normalize

    @Option(name: .customLong("val-split"), parsing: .unconditional, help: ArgumentHelp("Hold out N training samples (chosen by the seed) as a validation split, evaluated every epoch; the rest are trained on.", valueName: "n"))
    var validationSamples = defaults.data.validationSamples

    @Flag(help: "With --val-split and --checkpoint-dir: also keep best.scnn, the checkpoint of the best validation accuracy (never pruned; --resume continues from the newest checkpoint, not from it).")
    var keepBest = false

    @Option(parsing: .unconditional, help: "Threads per rank (default: cores ÷ ranks on the node). Does not change the results.")
    var threads: Int?

    @Option(help: "Gradient reduction: exact (fixed point, the same bits for any rank count) or float (plain MPI_Allreduce overlapped with backward; faster, not reproducible across rank counts).")
    var reduction = Reduction.exact

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

    @Option(help: "Append JSON lines of metrics (per logged step and per epoch) to this file (- for standard output).")
    var metrics: String?

    @Option(parsing: .unconditional, help: "Log a step to --metrics every N steps (and the first step).")
    var logEvery = 50

    @Option(parsing: .unconditional, help: "Seconds a rank may wait in one MPI collective for the others before it ends with an error naming the step, so that a lost host or a cut link stops the job instead of hanging it (0: wait forever). Must exceed the longest legitimate wait, such as rank 0 writing a checkpoint.")
    var collectiveTimeout: Double = 120

    /// The flag that sets each setting, by the name `Hyperparameters.settings` and
    /// `InvalidSetting` use: so that messages speak the user's flags.
    static let flags = [
        "seed": "--seed", "batchSize": "--batch-size", "chunkSize": "--chunk-size", "epochs": "--epochs",
        "learningRate": "--lr", "schedule.shape": "--lr-schedule", "schedule.warmupSteps": "--warmup-steps",
        "schedule.stepEpochs": "--lr-step-epochs", "schedule.gamma": "--lr-gamma", "optimizer.momentum": "--momentum",
        "optimizer.weightDecay": "--weight-decay", "optimizer.nesterov": "--nesterov", "optimizer.kind": "--optimizer",
        "optimizer.beta1": "--betas β1", "optimizer.beta2": "--betas β2", "optimizer.epsilon": "--eps",
        "clipGradNorm": "--clip-grad-norm", "labelSmoothing": "--label-smoothing",
        "layers.batchNormMomentum": "--bn-momentum", "layers.batchNormEpsilon": "--bn-eps", "initialization": "--init",
        "data.augmentation": "--augment", "data.normalize": "--normalize", "data.validationSamples": "--val-split",
        "maxSteps": "--max-steps", "threads": "--threads", "checkReplicasEvery": "--check-replicas",
    ]
    static func flag(_ setting: String) -> String { flags[setting] ?? setting }

    func validate() throws {
        if resume && checkpointDir == nil { throw ValidationError("--resume needs --checkpoint-dir DIR") }
        if allowFreshStart && !resume { throw ValidationError("--allow-fresh-start only applies with --resume") }
        if checkpointEvery < 0 { throw ValidationError("--checkpoint-every must be 0 or more (got \(checkpointEvery))") }
        if keep < 1 { throw ValidationError("--keep must be at least 1 (got \(keep))") }
        if keepBest && (validationSamples == 0 || checkpointDir == nil) {
            throw ValidationError("--keep-best needs --val-split N (N > 0) and --checkpoint-dir DIR")
        }
        if logEvery < 1 { throw ValidationError("--log-every must be at least 1 (got \(logEvery))") }
        if !(collectiveTimeout >= 0) || !collectiveTimeout.isFinite {
            throw ValidationError("--collective-timeout must be a number of seconds, or 0 to wait forever (got \(collectiveTimeout))")
        }
    }

    var options: TrainingOptions {
        var o = TrainingOptions()
        o.hyperparameters.seed = seed
        o.hyperparameters.batchSize = batchSize
        o.hyperparameters.chunkSize = chunkSize
        o.hyperparameters.epochs = epochs
        o.hyperparameters.learningRate = lr
        o.hyperparameters.schedule.shape = lrSchedule
        o.hyperparameters.schedule.warmupSteps = warmupSteps
        o.hyperparameters.schedule.stepEpochs = lrStepEpochs
        o.hyperparameters.schedule.gamma = lrGamma
        o.hyperparameters.optimizer = Optimizer(kind: optimizer, momentum: momentum, weightDecay: weightDecay, nesterov: nesterov)
        (o.hyperparameters.optimizer.beta1, o.hyperparameters.optimizer.beta2) = (betas.beta1, betas.beta2)
        o.hyperparameters.optimizer.epsilon = eps
        o.hyperparameters.clipGradNorm = clipGradNorm
        o.hyperparameters.labelSmoothing = labelSmoothing
        o.hyperparameters.layers = LayerHyperparameters(batchNormMomentum: bnMomentum, batchNormEpsilon: bnEps)
        o.hyperparameters.initialization = `init`
        o.hyperparameters.data.augmentation = augment
        o.hyperparameters.data.normalize = normalize
        o.hyperparameters.data.validationSamples = validationSamples
        o.maxSteps = maxSteps
        o.threads = threads ?? Job.defaultThreads
        o.reduction = reduction
        o.checkReplicasEvery = checkReplicas
        return o
    }

    /// What each rank prepares on its own before the ranks agree to train.
    struct Preparation {
        let network: Network
        let data: DataSplits
        let metricsLog: MetricsLog?
        let resumeFrom: (checkpoint: Checkpoint, path: String)?
        /// The validation accuracy of the best checkpoint of the run being resumed.
        let bestValidationAccuracy: Double?
        /// (name, value) pairs every rank must share.
        let settings: [(name: String, value: String)]
    }

    func run() throws {
        try Job.run {
            let options = self.options
            let communicator = Job.communicator
            if let mpi = communicator as? MPICommunicator, collectiveTimeout > 0 { mpi.startWatchdog(timeout: collectiveTimeout) }
            let store = checkpointDir.map { CheckpointStore(directory: $0, keep: keep) }
            let prepared = Result { try prepare(options, store: store) }
            try RankAgreement.agree(prepared.map(\.settings), communicator: communicator)
            let preparation = try prepared.get()
            let (network, data) = (preparation.network, preparation.data)
            let h = options.hyperparameters
            let trainer = try RankAgreement.together {
                try Trainer(network: network, batches: ShuffledBatches(data.train, seed: h.seed, augmentation: h.data.augmentation),
                            options: options, communicator: communicator)
            }
            StopSignal.install()
            if let found = preparation.resumeFrom {
                try RankAgreement.together { try trainer.restore(found.checkpoint) }
                Job.say("resumed from \(found.path) at step \(trainer.step)")
            }
            Job.say("model \(modelOptions.model) (\(network.parameterCount.formatted()) parameters); data \(data.train.count) train / \(data.validation.map { "\($0.count) validation / " } ?? "")\(data.test.count) test of \(data.train.shape.map(String.init).joined(separator: "×")), \(data.train.classes) classes")
            Job.say("\(communicator.size) rank\(communicator.size == 1 ? "" : "s") × \(options.threads) thread\(options.threads == 1 ? "" : "s"); batch \(h.batchSize) = \(h.chunksPerBatch) chunks of \(h.chunkSize); lr \(h.learningRate) \(h.schedule.summary); \(h.optimizer.summary)\(h.clipGradNorm > 0 ? "; gradient norm clipped to \(h.clipGradNorm)" : "")\(h.labelSmoothing > 0 ? "; label smoothing \(h.labelSmoothing)" : ""); \(trainer.stepsPerEpoch) steps per epoch, \(trainer.totalSteps) in all")
            let progress = Progress(total: trainer.totalSteps, epochs: h.epochs, batchSize: h.batchSize, logEvery: logEvery,
                                    metrics: preparation.metricsLog, learningRate: trainer.learningRate(atStep:))
            if h.data.augmentation.isEnabled || h.data.normalize {
                Job.say("augmentation \(h.data.augmentation)" + (data.train.normalization.map { "; normalization \($0.summary)" } ?? ""))
            }
            let run = TrainingRun(trainer: trainer, validation: data.validation, test: data.test, store: store,
                                  checkpointEvery: checkpointEvery, keepBest: keepBest)
            if keepBest { try RankAgreement.together { try run.resumeBest(preparation.bestValidationAccuracy) } }
            switch try run.run(observer: progress) {
            case .finished(let checkpoint):
                if let checkpoint { Job.say("checkpoint: \(checkpoint)") }
                Job.say("parameter digest: \(trainer.digest)")
            case .stopped(let signal, let step, let checkpoint):
                Job.say("stopped by \(signal) after step \(step)" + (checkpoint.map { "; checkpoint \($0); rerun with --resume to continue" } ?? "; no --checkpoint-dir, nothing saved"))
                // Not MPI_Finalize: after a signal it can hang (docs/architecture.md §5).
                Foundation.exit(ExitStatus.interrupted)
            }
        }
    }

    /// This rank's part of the start-up: flags, model, data, memory, metrics file, checkpoint
    /// to resume. Touches no collective, so that a failure here reaches the agreement.
    func prepare(_ options: TrainingOptions, store: CheckpointStore?) throws -> Preparation {
        let communicator = Job.communicator
        try options.validate(ranks: communicator.size)
        let spec = try ModelSpec(modelOptions.model)
        let h = options.hyperparameters
        let loaded = try DataSplits.load(modelOptions.data, seed: h.seed, classes: modelOptions.classes)
        try h.data.augmentation.check(shape: loaded.train.shape)
        let split = try loaded.holdingOut(h.data.validationSamples, seed: h.seed)
        let data = split.normalized(by: h.data.normalize ? InputNormalization(statisticsOf: split.train) : nil)
        let network = try Network(spec: spec, inputShape: data.train.shape, classes: data.train.classes,
                                  initScheme: options.hyperparameters.initialization)
        try Trainer.checkMemory(network: network, options: options, rank: communicator.rank,
                                ranks: communicator.size, ranksOnThisNode: Job.ranksOnThisNode)
        let resumeFrom = try store.flatMap { resume ? try findCheckpoint(in: $0, options: options, spec: spec, network: network) : nil }
        let resumedBest = resumeFrom.flatMap { bestValidationAccuracy(in: store!, upTo: $0.checkpoint.manifest.step) }
        if Job.isRoot { try store?.prepare() }
        let metricsLog = try metrics.map { try MetricsLog(path: $0) }
        var settings: [(name: String, value: String)] = [
            ("version", SwiftCNNTrain.configuration.version), ("--model", spec.text), ("data", loaded.identity),
        ]
        settings += options.hyperparameters.settings.map { (Train.flag($0.name), $0.value) }
        let resumedStep = resumeFrom.map { "\($0.checkpoint.manifest.step)" } ?? "none (from step 0)"
        settings += [
            ("--max-steps", maxSteps.map(String.init) ?? "none"), ("--reduction", reduction.rawValue),
            ("--check-replicas", "\(checkReplicas)"), ("--checkpoint-every", "\(checkpointEvery)"), ("--keep-best", "\(keepBest)"),
            // Whether, not where: every rank waits for rank 0's writes, but the path may differ.
            ("--checkpoint-dir", checkpointDir == nil ? "not given" : "given"),
            ("the resumed checkpoint's step", resumedStep),
        ]
        return Preparation(network: network, data: data, metricsLog: metricsLog, resumeFrom: resumeFrom,
                           bestValidationAccuracy: resumedBest, settings: settings)
    }
}

extension LearningRateSchedule.Shape: ExpressibleByArgument {}
extension InitScheme: ExpressibleByArgument {}
extension Reduction: ExpressibleByArgument {}
extension Optimizer.Kind: ExpressibleByArgument {}

import ArgumentParser
import Engine
import Foundation

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a checkpoint's weights for PyTorch (safetensors).",
        discussion: """
        Writes every parameter and batch-norm running statistic as F32, named and shaped as \
        the state_dict of the equivalent PyTorch module (conv1.weight [32,1,3,3], \
        bn1.running_mean, fc1.weight [128,1600], …), plus bnN.num_batches_tracked (I64, the \
        checkpoint's step). The optimizer's state is not exported. The header's __metadata__ holds \
        the model spec, input shape (CxHxW), classes, preprocessing (x/255, or with --normalize \
        (x/255 − mean)/std with normalize_mean and normalize_std per channel), batch-norm eps \
        and momentum, whether the outputs are logits or log-probabilities, the step and the \
        parameter digest. docs/export.md has the module class and the loading code; \
        scripts/check-export checks a checkpoint's export against PyTorch.

        Examples:
          swift-cnn-train export runs/checkpoint-000004685.scnn -o model.safetensors
          swift-cnn-train export ckpt.scnn       # writes ckpt.safetensors
        """)

    @Argument(help: "The checkpoint file to export.")
    var checkpoint: String

    /// What `export` can write.
    enum Format: String, CaseIterable, ExpressibleByArgument {
        case safetensors
    }

    @Option(help: "The output format; only safetensors.")
    var format = Format.safetensors

    @Option(name: [.short, .customLong("output")], help: "The file to write; - is standard output (default: the checkpoint's path with the extension .safetensors).")
    var output: String?

    func run() throws {
        try Job.run {
            guard Job.isRoot else { return }
            let output = OutputFile(self.output ?? ((self.checkpoint as NSString).deletingPathExtension + ".safetensors"))
            try output.refuseToOverwrite(self.checkpoint, "the checkpoint being read")
            let (checkpoint, network) = try loadCheckpoint(path: self.checkpoint)
            let file = safetensors(checkpoint, network)
            let bytes = file.encoded()
            try output.write(bytes)
            // On standard output the report would end up inside the file.
            if !output.isStandardOutput {
                Job.say("wrote \(output.path): \(file.tensors.count) tensors, \(bytes.count) bytes (model \(network.spec.text), step \(checkpoint.manifest.step))")
            }
        }
    }

    /// The checkpoint's parameters and buffers in PyTorch's `state_dict` order: each layer's
    /// tensors as declared (weight, bias, running_mean, running_var), then a batch norm's
    /// num_batches_tracked.
    func safetensors(_ checkpoint: Checkpoint, _ network: Network) -> SafetensorsFile {
        let m = checkpoint.manifest
        var tensors: [SafetensorsFile.Tensor] = []
        for tensor in network.layout.tensors {
            let source = tensor.kind == .parameter ? checkpoint.parameters : checkpoint.buffers
            tensors.append(.init(name: tensor.name, shape: tensor.shape, floats: source[tensor.range]))
            if tensor.name.hasSuffix(".running_var") {
                tensors.append(.init(name: tensor.name.replacingOccurrences(of: ".running_var", with: ".num_batches_tracked"),
                                     scalar: Int64(m.step)))
            }
        }
        var metadata = [
            "format": "pt",
            "producer": "swift-cnn-train \(SwiftCNNTrain.configuration.version)",
            "model": network.spec.text,
            "input_shape": network.inputShape.map(String.init).joined(separator: "x"),
            "classes": String(network.classes),
            "layout": "NCHW",
            "preprocessing": m.normalization == nil ? "x/255" : "(x/255 - normalize_mean) / normalize_std, per channel",
            "output": network.loss == .nll ? "log_probabilities" : "logits",
            "batch_norm_eps": String(m.hyperparameters.layers.batchNormEpsilon),
            "batch_norm_momentum": String(m.hyperparameters.layers.batchNormMomentum),
            "step": String(m.step),
            "parameter_digest": parameterDigest(parameters: checkpoint.parameters, buffers: checkpoint.buffers),
        ]
        if let normalization = m.normalization {
            metadata["normalize_mean"] = normalization.mean.map { "\($0)" }.joined(separator: ",")
            metadata["normalize_std"] = normalization.std.map { "\($0)" }.joined(separator: ",")
        }
        if let preset = ModelSpec.presets.first(where: { $0.spec == network.spec.text }) { metadata["preset"] = preset.name }
        return SafetensorsFile(tensors: tensors, metadata: metadata)
    }
}

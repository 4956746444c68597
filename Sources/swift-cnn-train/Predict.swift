import ArgumentParser
import DistributedTraining
import Engine
import Foundation

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict classes with a checkpoint: a CSV of each sample's most probable class and its probability.",
        discussion: """
        Output: CSV with the header index,predicted,confidence — the sample's index in the \
        split, the most probable class, and its softmax probability (for a model that ends \
        in logsoftmax, the exponential of its output). --top K adds columns top2,p2,…,topK,pK \
        with the next most probable classes. Inputs are scaled x/255 (normalised by the \
        checkpoint's statistics if it was trained with --normalize), as in training; the \
        model runs in eval mode (batch norm uses its running statistics).

        With --image, predicts for binary PGM (P5) or PPM (P6) files with maxval 255 instead, \
        one row per file in the order given, under the header image,predicted,confidence,…; \
        each image's channels, height and width must match the model's input (a 28×28 PGM \
        for the Fashion-MNIST models, a 32×32 PPM for cifar-cnn).

        Serial: under mpirun, only rank 0 works.

        Examples:
          swift-cnn-train predict --checkpoint ckpt.scnn -o predictions.csv
          swift-cnn-train predict --checkpoint c.scnn --split train --limit 9 --top 3
          swift-cnn-train predict --checkpoint ckpt.scnn --image a.pgm --image b.pgm
        """)

    @Option(help: "The checkpoint file whose model predicts.")
    var checkpoint: String

    @Option(help: "Data directory or synthetic[:TRAIN[:TEST]] (as for train); not used with --image.")
    var data = "/usr/share/datasets/fashion-mnist"

    @Option(help: "Which split: test, train (the samples trained on) or validation (held out by the checkpoint's --val-split).")
    var split = Split.test

    @Option(parsing: .unconditional, help: "Predict only the first N samples of the split (default: all).")
    var limit: Int?

    @Option(parsing: .unconditional, help: "Columns for the K most probable classes (1 … the class count).")
    var top = 1

    @Option(help: "A binary PGM (P5) or PPM (P6) image to predict instead of --data; repeat for several (default: none).")
    var image: [String] = []

    @Option(name: [.short, .customLong("output")], help: "The CSV file to write; - is standard output.")
    var output = "-"

    @Option(parsing: .unconditional, help: "Threads (default: the cores). Does not change the results.")
    var threads: Int?

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1 (got \(limit))") }
        if limit != nil && !image.isEmpty { throw ValidationError("--limit applies to --data, not to --image") }
        guard top >= 1 else { throw ValidationError("--top must be at least 1 (got \(top))") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1 (got \(threads))") }
    }

    func run() throws {
        try Job.run {
            guard Job.isRoot else { return }
            let output = OutputFile(self.output)
            try output.refuseToOverwrite(self.checkpoint, "the checkpoint being read")
            for path in image { try output.refuseToOverwrite(path, "an image being read") }
            let (checkpoint, network) = try loadCheckpoint(path: self.checkpoint)
            guard top <= network.classes else {
                throw UsageError("--top \(top) is more than the model's \(network.classes) classes")
            }
            let predictor = Predictor(checkpoint: checkpoint, network: network,
                                      threads: threads ?? ProcessInfo.processInfo.activeProcessorCount)
            var csv = ([image.isEmpty ? "index" : "image", "predicted", "confidence"]
                + (1..<top).flatMap { ["top\($0 + 1)", "p\($0 + 1)"] }).joined(separator: ",") + "\n"
            func row(_ first: String, _ probabilities: [Double]) {
                let best = topClasses(probabilities, top)
                csv += ([first] + best.flatMap { [String($0.label), String(Float($0.probability))] }).joined(separator: ",") + "\n"
            }
            if image.isEmpty {
                let dataset = try loadSplit(split, of: data, for: network, manifest: checkpoint.manifest)
                try predictor.predict(count: min(limit ?? dataset.count, dataset.count),
                                      fill: { dataset.scale($0, into: $1) },
                                      each: { row(String($0), $1) })
            } else {
                let images = try image.map { path in
                    let picture = try NetpbmImage.load(path: path)
                    guard picture.shape == network.inputShape else {
                        throw EngineError.invalidData("image '\(path)' is \(picture.shape.map(String.init).joined(separator: "×")) (channels×height×width) but the model takes \(network.inputShape.map(String.init).joined(separator: "×")); it needs \(NetpbmImage.describe(shape: network.inputShape))")
                    }
                    return picture
                }
                let size = network.inputShape.reduce(1, *)
                try predictor.predict(count: images.count,
                                      fill: { range, input in
                                          for (slot, i) in range.enumerated() {
                                              images[i].scale(into: input + slot * size, normalization: checkpoint.manifest.normalization)
                                          }
                                      },
                                      each: { row(csvField(image[$0]), $1) })
            }
            try output.write(Array(csv.utf8))
        }
    }
}

/// A CSV field, quoted (RFC 4180) if it holds a comma, a quote or a line break.
func csvField(_ text: String) -> String {
    guard text.contains(where: { $0 == "," || $0 == "\"" || $0.isNewline }) else { return text }
    return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

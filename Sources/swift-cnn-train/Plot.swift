import ArgumentParser
import Engine
import Foundation

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Plot loss and accuracy curves from a metrics file to a self-contained SVG.",
        discussion: """
        Reads the JSON lines that `train --metrics FILE` appends and draws two panels over the \
        global step: loss (each logged step's batch loss, the epoch's mean train loss and the \
        test loss at each epoch's end) and accuracy (each logged step's batch accuracy and the \
        test accuracy at each epoch's end). train logs the first step and every --log-every steps, plus every \
        epoch's last step.

        train appends, so one file may hold several runs: a record replaces the earlier ones \
        from its step on, so a resumed run plots as one curve and a rerun from step 1 replaces \
        the old run.

        Examples:
          swift-cnn-train train --epochs 5 --metrics runs/metrics.jsonl
          swift-cnn-train plot runs/metrics.jsonl -o runs/curves.svg
          swift-cnn-train plot m.jsonl -o curves.svg --title "seed-cnn, lr 0.05"
        """)

    @Argument(help: "The metrics file (JSON lines) that train --metrics wrote.")
    var metrics: String

    @Option(name: [.short, .customLong("output")], help: "The SVG file to write; - is standard output.")
    var output: String

    @Option(help: "The chart's title (default: the metrics file's name).")
    var title: String?

    @Option(parsing: .unconditional, help: "Width of the image in pixels.")
    var width = 900

    @Option(parsing: .unconditional, help: "Height of each of the two panels in pixels.")
    var panelHeight = 300

    func validate() throws {
        guard (500...10000).contains(width) else { throw ValidationError("--width must be between 500 and 10000 (got \(width))") }
        guard (150...10000).contains(panelHeight) else {
            throw ValidationError("--panel-height must be between 150 and 10000 (got \(panelHeight))")
        }
    }

    func run() throws {
        try Job.run {
            guard Job.isRoot else { return }
            let output = OutputFile(self.output)
            try output.refuseToOverwrite(metrics, "the metrics file being read")
            let curves = try TrainingCurves.load(path: metrics)
            if let line = curves.ignoredCutOffLine {
                FileHandle.standardError.write(Data("warning: ignored the cut-off last line (line \(line), no newline and not JSON) of metrics file '\(metrics)'\n".utf8))
            }
            let steps = Int(curves.lastStep)
            let chart = LineChart(
                title: title ?? "Training curves: \((metrics as NSString).lastPathComponent)",
                subtitle: "\(plural(steps, "step")), \(plural(curves.epochCount, "evaluation")) on the test set",
                xTitle: "step",
                panels: [
                    LineChart.Panel(yTitle: "loss", series: [
                        .init(label: "train loss (batch)", points: curves.stepLoss.map { ($0.step, $0.value) }, color: "#4c8bd6", lineWidth: 1.2),
                        .init(label: "train loss (epoch mean)", points: curves.epochTrainLoss.map { ($0.step, $0.value) }, color: "#f28e2b", dashed: true, markers: true),
                        .init(label: "test loss", points: curves.testLoss.map { ($0.step, $0.value) }, color: "#d62728", markers: true, lineWidth: 2),
                    ], includeZero: true),
                    LineChart.Panel(yTitle: "accuracy (%)", series: [
                        .init(label: "train accuracy (batch)", points: curves.stepAccuracy.map { ($0.step, 100 * $0.value) }, color: "#4c8bd6", lineWidth: 1.2),
                        .init(label: "test accuracy", points: curves.testAccuracy.map { ($0.step, 100 * $0.value) }, color: "#d62728", markers: true, lineWidth: 2),
                    ], yLimits: 0...100),
                ],
                width: Double(width), panelHeight: Double(panelHeight))
            try output.write(Array(chart.render().utf8))
            // On standard output the report would end up inside the SVG.
            if !output.isStandardOutput {
                Job.say("wrote \(output.path): \(plural(curves.stepLoss.count, "logged step")), \(plural(curves.epochCount, "test evaluation"))")
            }
        }
    }
}

/// "1 step", "2 steps".
func plural(_ count: Int, _ noun: String) -> String { "\(count) \(noun)\(count == 1 ? "" : "s")" }

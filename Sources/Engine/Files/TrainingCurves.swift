import Foundation

/// The curves `plot` draws, read from the JSON lines `train --metrics` appends
/// (`Progress.record`): objects with "kind" "step" or "epoch", "step" (1-based global step),
/// "loss" and "accuracy" (of that step's batch, accuracy in 0…1), and for epochs also
/// "train_loss" (the epoch's mean), "test_loss" and "test_accuracy".
public struct TrainingCurves {
    public struct Point: Equatable {
        public let step: Double
        public let value: Double
    }

    /// Per logged step (and every epoch's last step): the batch's loss and accuracy.
    public var stepLoss: [Point] = []
    public var stepAccuracy: [Point] = []
    /// At each epoch's end (or a partial epoch's, when --max-steps stops it).
    public var epochTrainLoss: [Point] = []
    public var testLoss: [Point] = []
    public var testAccuracy: [Point] = []
    /// The number of the last line when it was cut off and ignored: no newline after it and
    /// not JSON, what a kill or a full disk leaves behind while train appends.
    public var ignoredCutOffLine: Int?

    public var isEmpty: Bool { stepLoss.isEmpty }
    public var lastStep: Double { stepLoss.last?.step ?? 0 }
    public var epochCount: Int { testLoss.count }

    /// Reads a metrics file. `train` appends, so a file may hold several runs: a record
    /// replaces every earlier record after its step, and those of its own kind at its step,
    /// so a resumed run reads as one curve and a rerun from step 1 replaces the old run.
    /// Records of other kinds are skipped, and so is a cut-off last line (`ignoredCutOffLine`);
    /// any other line that is not a record is an error.
    public static func load(path: String) throws -> TrainingCurves {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw EngineError.invalidData("cannot read metrics file '\(path)' (write one with train --metrics FILE)")
        }
        return try TrainingCurves(jsonLines: data, path: path)
    }

    /// Reads the contents of the metrics file `path` (named in errors), as `load` does.
    public init(jsonLines data: Data, path: String) throws {
        guard let text = String(data: data, encoding: .utf8) else {
            throw EngineError.invalidData("metrics file '\(path)' is not UTF-8 text (expected the JSON lines train --metrics writes)")
        }
        var steps: [(step: Int, loss: Double, accuracy: Double)] = []
        var epochs: [(step: Int, loss: Double, accuracy: Double, trainLoss: Double, testLoss: Double, testAccuracy: Double)] = []
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            func bad(_ why: String) -> EngineError {
                .invalidData("metrics file '\(path)' line \(index + 1): \(why) (expected the JSON lines train --metrics writes)")
            }
            guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                // Only the last line can lack its newline (the split's last piece).
                guard index == lines.count - 1 else { throw bad("not a JSON object") }
                self.ignoredCutOffLine = index + 1
                continue
            }
            guard let kind = object["kind"] as? String, kind == "step" || kind == "epoch" else { continue }
            func number(_ key: String) throws -> Double {
                guard let value = (object[key] as? NSNumber)?.doubleValue, value.isFinite else {
                    throw bad("a \(kind) record without a finite number \"\(key)\"")
                }
                return value
            }
            let stepValue = try number("step")
            guard stepValue >= 1, stepValue == stepValue.rounded(), stepValue < 1e15 else { throw bad("\"step\" \(stepValue) is not a positive integer") }
            let step = Int(stepValue)
            let loss = try number("loss"), accuracy = try number("accuracy")
            if kind == "step" {
                if let last = steps.last, last.step >= step {
                    steps.removeAll { $0.step >= step }
                    epochs.removeAll { $0.step > step }
                }
                steps.append((step, loss, accuracy))
            } else {
                if let last = epochs.last, last.step >= step {
                    epochs.removeAll { $0.step >= step }
                    steps.removeAll { $0.step > step }
                }
                epochs.append((step, loss, accuracy, try number("train_loss"), try number("test_loss"), try number("test_accuracy")))
            }
        }
        // An epoch's record also carries its last step's batch loss and accuracy.
        var batch: [Int: (loss: Double, accuracy: Double)] = [:]
        for e in epochs { batch[e.step] = (e.loss, e.accuracy) }
        for s in steps { batch[s.step] = (s.loss, s.accuracy) }
        for (step, value) in batch.sorted(by: { $0.key < $1.key }) {
            stepLoss.append(Point(step: Double(step), value: value.loss))
            stepAccuracy.append(Point(step: Double(step), value: value.accuracy))
        }
        for e in epochs {
            epochTrainLoss.append(Point(step: Double(e.step), value: e.trainLoss))
            testLoss.append(Point(step: Double(e.step), value: e.testLoss))
            testAccuracy.append(Point(step: Double(e.step), value: e.testAccuracy))
        }
        guard !isEmpty else {
            throw EngineError.invalidData("metrics file '\(path)' has no step or epoch records (write one with train --metrics FILE)")
        }
    }
}

import Engine
import Foundation
import TestSupport
import XCTest

/// `--augment`: each sample's draws are a pure function of (seed, epoch, its index), whatever
/// batch, chunk or order loads it; the transforms they drive match hand-checked examples and
/// torchvision's, written out in torch (`Fixtures/augmentation.json`).
final class AugmentationTests: XCTestCase {
    /// A 1×3×3 image of bytes 1…9, rows 1 2 3 / 4 5 6 / 7 8 9.
    let square = Dataset(name: "square", shape: [1, 3, 3], classes: 10, pixels: Array(1...9), labels: [0])

    func output(_ dataset: Dataset, sample: Int = 0, _ draw: AugmentationDraw) -> [Float] {
        var out = [Float](repeating: .nan, count: dataset.sampleSize)
        dataset.augmentSample(sample, draw, into: &out)
        return out
    }

    func bytes(_ values: [UInt8]) -> [Float] { values.map { Float($0) / 255 } }

    func testParsesAndWritesTheFlagsList() throws {
        let all = try Augmentation("crop4,flip,erase")
        XCTAssertEqual([all.cropPadding], [4])
        XCTAssertTrue(all.flip && all.erase)
        XCTAssertEqual(all.text, "crop4,flip,erase")
        XCTAssertEqual(try Augmentation("erase,crop2").text, "crop2,erase", "written in the order applied")
        XCTAssertEqual(try Augmentation("none"), Augmentation())
        XCTAssertFalse(Augmentation().isEnabled)
        for (bad, message) in [("crop0", "'crop0' needs a padding of 1…64"), ("crop", "'crop' needs a padding"),
                               ("crop65", "'crop65' needs a padding"), ("flip,flip", "'flip' is not one of"),
                               ("blur", "'blur' is not one of crop<P>, flip, erase"), ("", "'' is not one of"),
                               ("flip,", "'' is not one of")] {
            XCTAssertThrowsError(try Augmentation(bad), bad) { XCTAssertTrue("\($0)".contains(message), "\(bad): \($0)") }
        }
    }

    /// Worked by hand: output (y, x) reads input (y + dy, x + dx), zero outside; a flip reads
    /// column W − 1 − x of the crop; erasing zeroes a rectangle.
    func testCropFlipAndEraseMatchHandCheckedExamples() {
        var draw = AugmentationDraw()
        XCTAssertEqual(output(square, draw), bytes(Array(1...9)), "no draw: the image")
        (draw.dy, draw.dx) = (1, -1)
        XCTAssertEqual(output(square, draw), bytes([0, 4, 5, 0, 7, 8, 0, 0, 0]))
        draw.flip = true
        XCTAssertEqual(output(square, draw), bytes([5, 4, 0, 8, 7, 0, 0, 0, 0]))
        (draw.dy, draw.dx) = (-2, 2)
        XCTAssertEqual(output(square, draw), bytes([0, 0, 0, 0, 0, 0, 0, 0, 3]))
        (draw.dy, draw.dx, draw.flip) = (0, 0, true)
        XCTAssertEqual(output(square, draw), bytes([3, 2, 1, 6, 5, 4, 9, 8, 7]))
        (draw.erasedRows, draw.erasedColumns) = (1..<3, 0..<2)
        XCTAssertEqual(output(square, draw), bytes([3, 2, 1, 0, 0, 4, 0, 0, 7]))
        // Normalised, the padding is byte 0's input and the erased value stays 0.
        let normalized = square.normalized(by: InputNormalization(mean: [0.5], std: [0.25]))
        var shifted = AugmentationDraw()
        (shifted.dx, shifted.erasedRows, shifted.erasedColumns) = (1, 2..<3, 2..<3)
        func v(_ byte: UInt8) -> Float { (Float(byte) / 255 - 0.5) / 0.25 }
        XCTAssertEqual(output(normalized, shifted), [v(2), v(3), v(0), v(5), v(6), v(0), v(8), v(9), 0])
    }

    /// The same draws through torchvision's transforms (fixture) give the same bits.
    func testMatchesTorchvisionTransformsForFixedDraws() throws {
        let fixture = try Fixture.load("augmentation")
        let image = fixture["x"].data.map { UInt8($0) }
        let dataset = Dataset(name: "image", shape: [3, 6, 5], classes: 10, pixels: image, labels: [0])
            .normalized(by: InputNormalization(mean: fixture["mean"].data, std: fixture["std"].data))
        let draws = fixture["draws"].data.map { Int($0) }, expected = fixture["y"].data
        for d in 0..<(draws.count / 7) {
            let row = Array(draws[(7 * d)..<(7 * d + 7)])
            var draw = AugmentationDraw()
            (draw.dy, draw.dx, draw.flip) = (row[0] - 2, row[1] - 2, row[2] == 1)
            (draw.erasedRows, draw.erasedColumns) = (row[3]..<(row[3] + row[5]), row[4]..<(row[4] + row[6]))
            assertBitwiseEqual(output(dataset, draw), Array(expected[(90 * d)..<(90 * d + 90)]), "draw \(row)")
        }
    }

    /// Each sample as a batch loads it equals its draw of (seed, epoch, index) applied alone,
    /// for any split of the batch into loads; a new epoch draws anew.
    func testABatchIsAPureFunctionOfSeedEpochAndIndex() throws {
        let data = Synthetic.make(seed: 3, count: 40, stream: "train")
        let augmentation = try Augmentation("crop3,flip,erase")
        let batch = 8, size = data.sampleSize
        func load(step: Int, pieces: [Range<Int>]) -> (inputs: [Float], labels: [UInt8]) {
            let source = ShuffledBatches(data, seed: 9, augmentation: augmentation)
            source.prepare(step: step, batchSize: batch)
            var inputs = [Float](repeating: .nan, count: batch * size), labels = [UInt8](repeating: 0, count: batch)
            for piece in pieces.reversed() {
                inputs.withUnsafeMutableBufferPointer { i in
                    labels.withUnsafeMutableBufferPointer { l in
                        source.load(positions: piece, into: i.baseAddress! + piece.lowerBound * size,
                                    labels: l.baseAddress! + piece.lowerBound)
                    }
                }
            }
            return (inputs, labels)
        }
        for step in [0, 3, 5, 9] {
            let whole = load(step: step, pieces: [0..<batch])
            let pieces = load(step: step, pieces: [0..<3, 3..<4, 4..<8])
            assertBitwiseEqual(whole.inputs, pieces.inputs, "step \(step): one load or three")
            let epoch = step / (data.count / batch)
            let order = CounterRNG(seed: 9, stream: "epoch-\(epoch)").permutation(count: data.count)
            let rng = ShuffledBatches.augmentationRNG(seed: 9, epoch: epoch)
            for k in 0..<batch {
                let index = Int(order[(step % (data.count / batch)) * batch + k])
                let draw = AugmentationDraw(augmentation, rng: rng, index: index, height: 28, width: 28)
                assertBitwiseEqual(Array(whole.inputs[(k * size)..<((k + 1) * size)]), output(data, sample: index, draw),
                                   "step \(step), sample \(index)")
                XCTAssertEqual(whole.labels[k], data.labels[index])
            }
        }
        let epoch0 = AugmentationDraw(augmentation, rng: ShuffledBatches.augmentationRNG(seed: 9, epoch: 0), index: 7, height: 28, width: 28)
        XCTAssertEqual(epoch0, AugmentationDraw(augmentation, rng: ShuffledBatches.augmentationRNG(seed: 9, epoch: 0), index: 7, height: 28, width: 28))
        let draws = (1..<20).map { AugmentationDraw(augmentation, rng: ShuffledBatches.augmentationRNG(seed: 9, epoch: $0), index: 7, height: 28, width: 28) }
        XCTAssertTrue(draws.contains { $0 != epoch0 }, "other epochs draw anew")
    }

    /// Over many samples: every crop offset in −P…P, flips and erasures about half the time,
    /// each erased rectangle inside the image with torchvision's area and aspect bounds.
    func testDrawsCoverTheirRanges() throws {
        let rng = ShuffledBatches.augmentationRNG(seed: 1, epoch: 0)
        let draws = (0..<4000).map { AugmentationDraw(try! Augmentation("crop2,flip,erase"), rng: rng, index: $0, height: 28, width: 28) }
        XCTAssertEqual(Set(draws.map(\.dy)), Set(-2...2))
        XCTAssertEqual(Set(draws.map(\.dx)), Set(-2...2))
        let flips = draws.filter(\.flip).count, erased = draws.filter { !$0.erasedRows.isEmpty }
        XCTAssertTrue((1800...2200).contains(flips), "\(flips) flips of 4000")
        XCTAssertTrue((1800...2200).contains(erased.count), "\(erased.count) erasures of 4000")
        for draw in erased {
            XCTAssertTrue(draw.erasedRows.upperBound <= 28 && draw.erasedColumns.upperBound <= 28)
            let area = Double(draw.erasedRows.count * draw.erasedColumns.count) / 784
            XCTAssertTrue(area > 0.01 && area < 0.4, "area \(area)")
        }
        let off = AugmentationDraw(Augmentation(), rng: rng, index: 5, height: 28, width: 28)
        XCTAssertEqual(off, AugmentationDraw(), "no augmentation, no draw")
        var cropOnly = Augmentation()
        cropOnly.cropPadding = 2
        let alone = AugmentationDraw(cropOnly, rng: rng, index: 11, height: 28, width: 28)
        XCTAssertEqual([alone.dy, alone.dx], [draws[11].dy, draws[11].dx], "turning on a flip changes no crop")
    }

    /// Crop padding must be smaller than the image, and transforms need images.
    func testAugmentationMustFitTheData() throws {
        XCTAssertNoThrow(try Augmentation("crop2").check(shape: [1, 3, 3]))
        XCTAssertThrowsError(try Augmentation("crop3").check(shape: [1, 3, 3])) {
            XCTAssertEqual("\($0)", "data.augmentation crop3: the padding must be smaller than the 3×3 image")
        }
        XCTAssertThrowsError(try Augmentation("flip").check(shape: [784])) {
            XCTAssertTrue("\($0)".contains("needs images"), "\($0)")
        }
    }
}

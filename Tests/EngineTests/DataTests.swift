import Engine
import Foundation
import TestSupport
import XCTest

/// Data loading: MNIST-format IDX (plain and gzip), CIFAR-10 batches and synthetic data, and
/// bad files, each of which must fail with a message naming the problem before allocating
/// what a lying header asks for.
final class DataTests: XCTestCase {
    var directory = ""
    /// What a bad file may cost at most: far below the hundreds of MB its header claims.
    let memoryLimit = 64 << 20

    override func setUp() { directory = TestSupport.temporaryDirectory("data") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    func imagesFile(count: Int, rows: Int, cols: Int, pixels: [UInt8]) -> [UInt8] {
        IDXFile.images(count: count, rows: rows, cols: cols, pixels: pixels)
    }

    func labelsFile(_ labels: [UInt8]) -> [UInt8] { IDXFile.labels(labels) }

    func write(_ bytes: [UInt8], _ name: String, gzip: Bool = false) throws {
        let path = directory + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        if gzip {
            let result = try runCommand("/bin/gzip", ["-n", "-f", path])
            XCTAssertEqual(result.status, 0, "gzip: \(result.stderr)")
        }
    }

    /// Pixels that differ by position, so a swapped dimension or offset shows.
    func pixels(_ count: Int, salt: Int) -> [UInt8] { (0..<count).map { UInt8(($0 * 7 + salt) % 256) } }

    /// A train split of 7 images and a test split of 4, 3 rows × 5 columns, labels up to 6.
    func writeMNIST(gzip: Bool) throws -> (train: [UInt8], trainLabels: [UInt8], test: [UInt8], testLabels: [UInt8]) {
        let train = pixels(7 * 15, salt: 1), test = pixels(4 * 15, salt: 2)
        let trainLabels: [UInt8] = [0, 6, 2, 3, 4, 5, 1], testLabels: [UInt8] = [1, 1, 0, 2]
        try write(imagesFile(count: 7, rows: 3, cols: 5, pixels: train), "train-images-idx3-ubyte", gzip: gzip)
        try write(labelsFile(trainLabels), "train-labels-idx1-ubyte", gzip: gzip)
        try write(imagesFile(count: 4, rows: 3, cols: 5, pixels: test), "t10k-images-idx3-ubyte", gzip: gzip)
        try write(labelsFile(testLabels), "t10k-labels-idx1-ubyte", gzip: gzip)
        return (train, trainLabels, test, testLabels)
    }

    func checkLoadsMNIST(gzip: Bool) throws {
        let written = try writeMNIST(gzip: gzip)
        XCTAssertEqual(FileManager.default.fileExists(atPath: directory + "/train-images-idx3-ubyte.gz"), gzip)
        let splits = try DataSplits.load(directory)
        XCTAssertEqual(splits.train.shape, [1, 3, 5])
        XCTAssertEqual(splits.train.pixels, written.train)
        XCTAssertEqual(splits.train.labels, written.trainLabels)
        XCTAssertEqual(splits.test.pixels, written.test)
        XCTAssertEqual(splits.test.labels, written.testLabels)
        XCTAssertEqual(splits.train.classes, 10, "MNIST-format data has 10 classes, whatever labels occur")
        XCTAssertEqual(splits.test.classes, 10)
        var scaled = [Float](repeating: 0, count: 30)
        splits.train.scale([6, 0][...], into: &scaled)
        XCTAssertEqual(scaled, (written.train[90..<105] + written.train[0..<15]).map { Float($0) / 255 })
    }

    func testLoadsPlainIDX() throws { try checkLoadsMNIST(gzip: false) }

    /// A label beyond the class count is an error naming the file, the sample and the value,
    /// in either split, plain or gzip; it never widens the model.
    func testLabelOutsideTheClassesIsAnError() throws {
        _ = try writeMNIST(gzip: true)
        try write(labelsFile([0, 1, 2, 255]), "t10k-labels-idx1-ubyte", gzip: true)
        assertThrows(.data, containing: "t10k-labels-idx1-ubyte.gz': label 255 at sample 3 is outside the 10 classes (0…9)",
                     try DataSplits.load(directory))
        _ = try writeMNIST(gzip: false)
        try write(labelsFile([0, 1, 2, 3, 4, 12, 6]), "train-labels-idx1-ubyte")
        assertThrows(.data, containing: "train-labels-idx1-ubyte': label 12 at sample 5 is outside the 10 classes",
                     try DataSplits.load(directory))
        XCTAssertEqual(try DataSplits.load(directory, classes: 13).train.classes, 13, "--classes 13 admits label 12")
        assertThrows(.data, containing: "label 4 at sample 4 is outside the 4 classes (0…3)", try DataSplits.load(directory, classes: 4))
    }

    func testLoadsGzipIDX() throws { try checkLoadsMNIST(gzip: true) }

    func testTruncatedPlainIDX() throws {
        _ = try writeMNIST(gzip: false)
        try write(imagesFile(count: 7, rows: 3, cols: 5, pixels: pixels(7 * 15 - 10, salt: 1)), "train-images-idx3-ubyte")
        assertThrows(.data, containing: "promises 121 bytes of images but the file has 111", try DataSplits.load(directory))
        // A header that claims a million 28×28 images over a few bytes: refused before allocating.
        try write(imagesFile(count: 1_000_000, rows: 28, cols: 28, pixels: pixels(100, salt: 1)), "train-images-idx3-ubyte")
        let growth = try peakMemoryGrowth {
            assertThrows(.data, containing: "promises 784000016 bytes of images", try DataSplits.load(directory))
        }
        XCTAssertLessThan(growth, memoryLimit)
    }

    func testTruncatedGzipIDX() throws {
        _ = try writeMNIST(gzip: true)
        // A gzip file cut short: its last four bytes are no longer the size trailer.
        let path = directory + "/train-images-idx3-ubyte.gz"
        let whole = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        try Data(whole.prefix(whole.count - 8)).write(to: URL(fileURLWithPath: path))
        assertThrows(.data, containing: "truncated or corrupt", try DataSplits.load(directory))
        // A complete gzip stream of a truncated IDX file, and one of a header that lies.
        try write(imagesFile(count: 7, rows: 3, cols: 5, pixels: pixels(100, salt: 1)), "train-images-idx3-ubyte", gzip: true)
        assertThrows(.data, containing: "promises 121 bytes of images but the gzip stream holds 116", try DataSplits.load(directory))
        try write(imagesFile(count: 1_000_000, rows: 28, cols: 28, pixels: pixels(100, salt: 1)), "train-images-idx3-ubyte", gzip: true)
        let growth = try peakMemoryGrowth {
            assertThrows(.data, containing: "promises 784000016 bytes", try DataSplits.load(directory))
        }
        XCTAssertLessThan(growth, memoryLimit)
    }

    /// The memory assertions above can fail: a real 128 MB allocation shows up in the measure.
    func testPeakMemoryGrowthSeesAnAllocation() {
        let growth = peakMemoryGrowth {
            let bytes = UnsafeMutableRawPointer.allocate(byteCount: 128 << 20, alignment: 4096)
            memset(bytes, 1, 128 << 20)
            bytes.deallocate()
        }
        XCTAssertGreaterThan(growth, 100 << 20)
    }

    func testWrongMagic() throws {
        _ = try writeMNIST(gzip: false)
        var bytes = imagesFile(count: 7, rows: 3, cols: 5, pixels: pixels(7 * 15, salt: 1))
        bytes[2] = 0x09
        try write(bytes, "train-images-idx3-ubyte")
        assertThrows(.data, containing: "is not an IDX images file: magic bytes 0 0 9 3", try DataSplits.load(directory))
        // A labels file where the images should be: one dimension instead of three.
        try write(labelsFile([1, 2, 3]), "train-images-idx3-ubyte")
        assertThrows(.data, containing: "expected 0 0 8 3", try DataSplits.load(directory))
    }

    func testHeaderClaiming2To31Images() throws {
        for gzip in [false, true] {
            _ = try writeMNIST(gzip: gzip)
            try write(imagesFile(count: 2_147_483_648, rows: 28, cols: 28, pixels: pixels(784, salt: 1)),
                      "train-images-idx3-ubyte", gzip: gzip)
            let growth = try peakMemoryGrowth {
                assertThrows(.data, containing: "more than the 4 GiB limit", try DataSplits.load(directory))
            }
            XCTAssertLessThan(growth, memoryLimit, "gzip \(gzip)")
        }
    }

    func testImageAndLabelCountsDiffer() throws {
        _ = try writeMNIST(gzip: false)
        try write(labelsFile([1, 2, 3, 4, 5, 6]), "train-labels-idx1-ubyte")
        assertThrows(.data, containing: "has 7 images but", try DataSplits.load(directory))
        assertThrows(.data, containing: "has 6 labels", try DataSplits.load(directory))
    }

    func testMissingDirectory() {
        assertThrows(.data, containing: "does not exist", try DataSplits.load(directory + "/nowhere"))
    }

    func testDirectoryWithoutData() throws {
        try write([1, 2, 3], "README")
        assertThrows(.data, containing: "no data in", try DataSplits.load(directory))
        try write(imagesFile(count: 1, rows: 1, cols: 1, pixels: [0]), "train-images-idx3-ubyte")
        assertThrows(.data, containing: "but not all of", try DataSplits.load(directory))
    }

    // MARK: CIFAR-10

    func cifarBatch(labels: [UInt8], salt: Int) -> [UInt8] {
        labels.enumerated().flatMap { r, label in [label] + pixels(3072, salt: salt + r) }
    }

    /// Writes `data_batch_1.bin` … `data_batch_5.bin` (batches 3 to 5 of one record each) and
    /// `test_batch.bin`.
    func writeCIFAR(batch1: [UInt8], batch2: [UInt8], test: [UInt8]) throws {
        try write(batch1, "data_batch_1.bin")
        try write(batch2, "data_batch_2.bin")
        for b in 3...5 { try write(cifarBatch(labels: [UInt8(b)], salt: 30 + b), "data_batch_\(b).bin") }
        try write(test, "test_batch.bin")
    }

    func testLoadsCIFAR10() throws {
        let batch1 = cifarBatch(labels: [3, 9, 0], salt: 1), batch2 = cifarBatch(labels: [5], salt: 9)
        let test = cifarBatch(labels: [1, 2], salt: 20)
        try writeCIFAR(batch1: batch1, batch2: batch2, test: test)
        let splits = try DataSplits.load(directory)
        XCTAssertEqual(splits.train.shape, [3, 32, 32])
        XCTAssertEqual(splits.train.classes, 10)
        XCTAssertEqual(splits.train.labels, [3, 9, 0, 5, 3, 4, 5])
        XCTAssertEqual(splits.test.labels, [1, 2])
        XCTAssertEqual(Array(splits.train.pixels[3072..<6144]), Array(batch1[3074..<6146]), "record 1's pixels")
        XCTAssertEqual(Array(splits.train.pixels[9216..<12288]), Array(batch2[1...]), "batch 2 follows batch 1")
        XCTAssertEqual(splits.test.pixels.count, 2 * 3072)
    }

    func testCIFAR10LabelOutOfRange() throws {
        try writeCIFAR(batch1: cifarBatch(labels: [3], salt: 1), batch2: cifarBatch(labels: [3, 10], salt: 1),
                       test: cifarBatch(labels: [1], salt: 2))
        assertThrows(.data, containing: "data_batch_2.bin': label 10 at sample 1 is outside the 10 classes",
                     try DataSplits.load(directory))
        XCTAssertEqual(try DataSplits.load(directory, classes: 11).train.labels, [3, 3, 10, 3, 4, 5])
    }

    func testCIFAR10SizeNotAMultipleOfTheRecord() throws {
        try writeCIFAR(batch1: cifarBatch(labels: [3, 4], salt: 1).dropLast(5).map { $0 }, batch2: cifarBatch(labels: [1], salt: 2),
                       test: cifarBatch(labels: [1], salt: 2))
        assertThrows(.data, containing: "6141 bytes is not a multiple of 3073", try DataSplits.load(directory))
    }

    /// Some batches alone would train on part of the data without a word: an error names
    /// every missing file.
    func testIncompleteCIFAR10DirectoryIsAnError() throws {
        try writeCIFAR(batch1: cifarBatch(labels: [3], salt: 1), batch2: cifarBatch(labels: [1], salt: 2),
                       test: cifarBatch(labels: [1], salt: 2))
        for b in 2...4 { try FileManager.default.removeItem(atPath: directory + "/data_batch_\(b).bin") }
        assertThrows(.data, containing: "incomplete CIFAR-10 directory: data_batch_2.bin, data_batch_3.bin, data_batch_4.bin missing",
                     try DataSplits.load(directory))
        try FileManager.default.removeItem(atPath: directory + "/test_batch.bin")
        assertThrows(.data, containing: "data_batch_4.bin, test_batch.bin missing", try DataSplits.load(directory))
    }

    // MARK: Synthetic

    func testSyntheticDataIsDeterministicForASeed() throws {
        let a = Synthetic.make(seed: 3, count: 40, stream: "train")
        let b = Synthetic.make(seed: 3, count: 40, stream: "train")
        XCTAssertEqual(a.pixels, b.pixels)
        XCTAssertEqual(a.labels, b.labels)
        XCTAssertEqual(a.shape, [1, 28, 28])
        XCTAssertTrue(a.labels.allSatisfy { $0 < 10 })
        XCTAssertGreaterThan(Set(a.labels).count, 5, "labels spread over the classes")
        XCTAssertNotEqual(Synthetic.make(seed: 4, count: 40, stream: "train").pixels, a.pixels, "another seed")
        XCTAssertNotEqual(Synthetic.make(seed: 3, count: 40, stream: "test").pixels, a.pixels, "another stream")
        // A prefix of a larger set is the smaller set: sample s depends on (seed, stream, s) only.
        XCTAssertEqual(Array(Synthetic.make(seed: 3, count: 50, stream: "train").pixels.prefix(a.pixels.count)), a.pixels)

        let splits = try DataSplits.load("synthetic:60:12", seed: 3)
        XCTAssertEqual(splits.train.count, 60)
        XCTAssertEqual(splits.test.count, 12)
        XCTAssertEqual(Array(splits.train.pixels.prefix(a.pixels.count)), a.pixels)
        XCTAssertEqual(try DataSplits.load("synthetic:60", seed: 3).test.count, 10, "test defaults to train/6")
        assertThrows(.data, containing: "bad synthetic data spec", try DataSplits.load("synthetic:0"))
        assertThrows(.data, containing: "bad synthetic data spec", try DataSplits.load("synthetic:10:x"))
    }
}

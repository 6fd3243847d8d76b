package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// A record on disk is one frame (docs/spool.md, "On-disk format"):
//
//	offset  size  field
//	0       2     magic 0xE5 0x9A
//	2       1     version 1
//	3       1     flags, 0
//	4       4     length of data, u32 LE
//	8       4     CRC32C (Castagnoli) of bytes 4..8 and 12..end: length, seq, time, data
//	12      8     seq, u64 LE
//	20      8     time, unix nanoseconds, i64 LE
//	28      n     data
const (
	headerSize   = 28
	frameMagic0  = 0xE5
	frameMagic1  = 0x9A
	frameVersion = 1
)

// crcTable is Castagnoli's polynomial, which CPUs compute in hardware.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Why a frame does not decode. Recovery treats them all alike (the bytes are damaged); tests
// and the fuzzer tell them apart.
var (
	errShort   = errors.New("frame: shorter than its header or length")
	errMagic   = errors.New("frame: bad magic, version or flags")
	errLength  = errors.New("frame: length above the limit")
	errCRC     = errors.New("frame: CRC mismatch")
	errBadSeq  = errors.New("frame: sequence number out of order")
	errPosFile = errors.New("position file: damaged")
)

// frame is a decoded record whose data aliases the bytes it was decoded from.
type frame struct {
	seq   uint64
	nanos int64
	data  []byte
}

// frameSize is the bytes a record of n data bytes takes on disk.
func frameSize(n int) int64 { return headerSize + int64(n) }

// FrameSize is what a record of n bytes adds to Stats.Bytes (and to MaxBytes' count): the
// record and its framing. The collector reserves room in its write-ahead log with it.
func FrameSize(n int) int64 { return frameSize(n) }

// encodeFrame writes the frame of (seq, nanos, data) into buf, which it grows if needed, and
// returns the frame.
func encodeFrame(buf []byte, seq uint64, nanos int64, data []byte) []byte {
	n := headerSize + len(data)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	b := buf[:n]
	b[0], b[1], b[2], b[3] = frameMagic0, frameMagic1, frameVersion, 0
	binary.LittleEndian.PutUint32(b[4:8], uint32(len(data)))
	binary.LittleEndian.PutUint64(b[12:20], seq)
	binary.LittleEndian.PutUint64(b[20:28], uint64(nanos))
	copy(b[headerSize:], data)
	binary.LittleEndian.PutUint32(b[8:12], frameCRC(b))
	return b
}

// frameCRC is the checksum of a whole frame b: the length joins seq, time and data so that a
// flipped bit in the length cannot pass as a shorter record.
func frameCRC(b []byte) uint32 {
	return crc32.Update(crc32.Update(0, crcTable, b[4:8]), crcTable, b[12:])
}

// checkHeader reads the header at the start of b: the data length, or why it cannot be a
// frame's. maxData bounds the length; a frame must fit in b.
func checkHeader(b []byte, maxData int64) (int, error) {
	if len(b) < headerSize {
		return 0, errShort
	}
	if b[0] != frameMagic0 || b[1] != frameMagic1 || b[2] != frameVersion || b[3] != 0 {
		return 0, errMagic
	}
	n := int64(binary.LittleEndian.Uint32(b[4:8]))
	if n > maxData {
		return 0, errLength
	}
	if int64(len(b)) < headerSize+n {
		return 0, errShort
	}
	return int(n), nil
}

// decodeFrame decodes the frame at the start of b, returning it and its size on disk. It is
// what recovery and Peek trust: it returns a frame only when its checksum matches.
func decodeFrame(b []byte, maxData int64) (frame, int, error) {
	n, err := checkHeader(b, maxData)
	if err != nil {
		return frame{}, 0, err
	}
	size := headerSize + n
	if frameCRC(b[:size]) != binary.LittleEndian.Uint32(b[8:12]) {
		return frame{}, 0, errCRC
	}
	return frame{
		seq:   binary.LittleEndian.Uint64(b[12:20]),
		nanos: int64(binary.LittleEndian.Uint64(b[20:28])),
		data:  b[headerSize:size:size],
	}, size, nil
}

// The position file holds the head: the lowest sequence number not yet acked or dropped.
//
//	offset  size  field
//	0       4     magic "ESPO"
//	4       1     version 1
//	5       3     zero
//	8       8     head, u64 LE
//	16      4     CRC32C of bytes 0..16
const (
	positionName = "position"
	positionSize = 20
)

func encodePosition(head uint64) []byte {
	b := make([]byte, positionSize)
	copy(b, "ESPO")
	b[4] = 1
	binary.LittleEndian.PutUint64(b[8:16], head)
	binary.LittleEndian.PutUint32(b[16:20], crc32.Checksum(b[:16], crcTable))
	return b
}

func decodePosition(b []byte) (uint64, error) {
	if len(b) != positionSize || string(b[:4]) != "ESPO" || b[4] != 1 {
		return 0, fmt.Errorf("%w: %d bytes, bad header", errPosFile, len(b))
	}
	if crc32.Checksum(b[:16], crcTable) != binary.LittleEndian.Uint32(b[16:20]) {
		return 0, fmt.Errorf("%w: CRC mismatch", errPosFile)
	}
	return binary.LittleEndian.Uint64(b[8:16]), nil
}

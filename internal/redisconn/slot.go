package redisconn

import "strings"

// Slots is how many hash slots a Redis Cluster has.
const Slots = 16384

// Slot is the hash slot of key in a Redis Cluster, as the server computes
// it: CRC16 (XMODEM) of the key, or of its hash tag (the part between the
// first "{" and the next "}", when not empty), modulo 16384. Keys of one
// slot live on one node, and only they may meet in one script or
// transaction.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key)) % Slots
}

// crc16 is CRC-16/XMODEM: polynomial 0x1021, initial value 0.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

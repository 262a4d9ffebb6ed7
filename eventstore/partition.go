package eventstore

import "fmt"

const (
	fnvOffset32 = 2166136261
	fnvPrime32  = 16777619
)

// Hash is the 32-bit FNV-1a hash of an aggregate id's bytes, the value stored with
// every event as partition_hash.
func Hash(aggregateID string) uint32 {
	h := uint32(fnvOffset32)
	for i := 0; i < len(aggregateID); i++ {
		h ^= uint32(aggregateID[i])
		h *= fnvPrime32
	}
	return h
}

// PartitionOf returns the partition (0 .. total-1) that handles an aggregate.
// A total below 1 is treated as 1.
func PartitionOf(aggregateID string, total int) int {
	if total <= 1 {
		return 0
	}
	return int(Hash(aggregateID) % uint32(total))
}

// CheckPartition validates a partition key against a partition count and returns an
// error that says what is allowed.
func CheckPartition(key, total int) error {
	if total < 1 {
		return fmt.Errorf("total partitions must be at least 1, got %d", total)
	}
	if key < 0 || key >= total {
		if total == 1 {
			return fmt.Errorf("partition key %d is out of range: with 1 partition the only key is 0", key)
		}
		return fmt.Errorf("partition key %d is out of range: with %d partitions the key must be 0..%d", key, total, total-1)
	}
	return nil
}

// Package upcasters turns stored events of older versions into the next version.
package upcasters

import (
	"errors"

	"example.com/app/generated/events/versions"
)

// OrderPlacedV1ToV2: customer_id was renamed buyer_id, amount widened.
func OrderPlacedV1ToV2(e versions.OrderPlacedV1) (versions.OrderPlacedV2, error) {
	return versions.OrderPlacedV2{BuyerID: e.CustomerID, Amount: int64(e.Amount)}, nil
}

// OrderPlacedV2ToV3: orders before version 3 were in euros.
func OrderPlacedV2ToV3(e versions.OrderPlacedV2) (versions.OrderPlacedV3, error) {
	return versions.OrderPlacedV3{BuyerID: e.BuyerID, Amount: e.Amount, Currency: "EUR"}, nil
}

// OrderShippedV1ToV2 turns a stored version-1 OrderShipped into version 2. The
// generated decoder (events.DecodeOrderShipped) calls it for every version-1
// event it reads.
func OrderShippedV1ToV2(e versions.OrderShippedV1) (versions.OrderShippedV2, error) {
	return versions.OrderShippedV2{
		// Carrier string: new in version 2
		// Tracking *string: new in version 2
	}, errors.New("upcasters: OrderShippedV1ToV2 not implemented")
}

// The upcaster of OrderPlaced version 1, as its user writes the stub esgen generate
// wrote. TestEndToEndLivingSpec copies it to upcasters/upcasters.go.

// Package upcasters turns stored events of older versions into the next version.
package upcasters

import (
	"example.com/shop/generated/events/versions"
)

// OrderPlacedV1ToV2: customer_id became buyer_id; orders before version 2 were in
// euros.
func OrderPlacedV1ToV2(e versions.OrderPlacedV1) (versions.OrderPlacedV2, error) {
	return versions.OrderPlacedV2{
		BuyerID:  e.CustomerID,
		Amount:   e.Amount,
		Currency: "EUR",
	}, nil
}

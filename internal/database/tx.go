package database

import (
	"context"
	"fmt"

	"github.com/gsvdev/agentregistry/ent"
)

// WithTx runs fn in a transaction of client and commits it, or rolls it back when fn
// fails. fn's error comes back as it is (callers' error codes survive); a failed begin
// or commit is wrapped. A panic in fn rolls back and goes on.
func WithTx(ctx context.Context, client *ent.Client, fn func(tx *ent.Tx) error) error {
	tx, err := client.Tx(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if v := recover(); v != nil {
			_ = tx.Rollback()
			panic(v)
		}
	}()
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil {
			return fmt.Errorf("%w (rollback: %v)", err, rerr)
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

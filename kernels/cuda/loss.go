package cuda

import (
	"fmt"

	"github.com/ffc-stream/ffc/kernels"
)

// lossBuffers validates the common arguments of the row losses.
func (be *Backend) lossBuffers(op string, rows, cols int, cos kernels.Buffer, targets kernels.IndexBuffer, needTargets bool, grad, rowLoss kernels.Buffer) (cb, gb, lb, tb *buffer, err error) {
	if err = dims(rows, cols); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("cuda: %s: rows=%d cols=%d: %w", op, rows, cols, err)
	}
	if err = dims(rows * cols); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("cuda: %s: rows=%d cols=%d: %w", op, rows, cols, err)
	}
	n := rows * cols
	if cb, err = be.f32("cos", cos, n); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
	}
	if gb, err = be.optF32("grad", grad, n); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
	}
	if gb != nil && gb.ptr != cb.ptr && overlap(gb, n, cb, n) {
		return nil, nil, nil, nil, fmt.Errorf("cuda: %s: %w: grad partially overlaps cos", op, kernels.ErrShape)
	}
	if lb, err = be.optF32("rowLoss", rowLoss, rows); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
	}
	if lb != nil && (overlap(lb, rows, cb, n) || overlap(lb, rows, gb, n)) {
		return nil, nil, nil, nil, fmt.Errorf("cuda: %s: %w: rowLoss overlaps cos or grad", op, kernels.ErrShape)
	}
	if needTargets {
		tb, err = be.i32("targets", targets, rows)
	} else {
		tb, err = be.optI32("targets", targets, rows)
	}
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
	}
	return cb, gb, lb, tb, nil
}

// MarginSoftmaxCE is the fused margin softmax cross-entropy, one block per
// row: one read of the row for the running maximum and sum of exponentials
// (online softmax), one more to write the gradient, no memory beyond the
// row's outputs (see kernels.Losses).
func (be *Backend) MarginSoftmaxCE(rows, cols int, m kernels.Margin, cos kernels.Buffer, targets kernels.IndexBuffer, gradScale float32, grad, rowLoss kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	const op = "margin softmax ce"
	if err := m.Validate(); err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	cb, gb, lb, tb, err := be.lossBuffers(op, rows, cols, cos, targets, true, grad, rowLoss)
	if err != nil {
		return err
	}
	if err := be.checkIndex("targets", tb, rows, cols, fmt.Sprintf("%d columns", cols)); err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	if rows == 0 || cols == 0 || (gb == nil && lb == nil) {
		return nil
	}
	return wrap(op, be.launchBlocks(kMarginCE, rows, cols, ptr(cb), ptr(tb), ptr(gb), ptr(lb), i(rows), i(cols),
		i(int(m.Kind)), f(m.S), f(m.M), f(gradScale), flag(gb != nil), flag(lb != nil)))
}

func checkK(op string, cols, k int) error {
	if k < 1 || k > cols || k > kernels.MaxTopK {
		return fmt.Errorf("cuda: %s: %w: k = %d, need 1 ≤ k ≤ min(cols = %d, %d)", op, kernels.ErrShape, k, cols, kernels.MaxTopK)
	}
	return nil
}

// TopK writes the k largest values of each row and their columns, one block
// per row: each thread keeps its share's top k, then k rounds of a block
// arg-max merge them.
func (be *Backend) TopK(rows, cols, k int, x kernels.Buffer, vals kernels.Buffer, idx kernels.IndexBuffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	const op = "top-k"
	if err := dims(rows, cols); err != nil {
		return fmt.Errorf("cuda: %s: rows=%d cols=%d: %w", op, rows, cols, err)
	}
	if err := dims(rows * cols); err != nil {
		return fmt.Errorf("cuda: %s: rows=%d cols=%d: %w", op, rows, cols, err)
	}
	if err := checkK(op, cols, k); err != nil {
		return err
	}
	xb, err := be.f32("x", x, rows*cols)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	vb, err := be.f32("vals", vals, rows*k)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	ib, err := be.i32("idx", idx, rows*k)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	if overlap(vb, rows*k, xb, rows*cols) {
		return fmt.Errorf("cuda: %s: %w: vals overlaps x", op, kernels.ErrShape)
	}
	if err := be.launchBlocks(kTopK, rows, cols, ptr(xb), ptr(vb), ptr(ib), i(rows), i(cols), i(k)); err != nil {
		return wrap(op, err)
	}
	// The columns written are below cols; which ones only the device knows.
	sh, o := ib.shadow()
	if sh.bound == nil {
		sh.bound = make([]bool, len(sh.val))
	}
	for j := o; j < o+rows*k; j++ {
		sh.val[j], sh.bound[j] = int32(cols-1), true
	}
	return nil
}

// FreshTopKLoss is the fresh-ID loss Σ max(topK(cos), 0) per selected row
// and its gradient, one block per row (see kernels.Losses).
func (be *Backend) FreshTopKLoss(rows, cols, k int, cos kernels.Buffer, targets kernels.IndexBuffer, gradScale float32, grad, rowLoss kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	const op = "fresh top-k loss"
	cb, gb, lb, tb, err := be.lossBuffers(op, rows, cols, cos, targets, false, grad, rowLoss)
	if err != nil {
		return err
	}
	if err := checkK(op, cols, k); err != nil {
		return err
	}
	if rows == 0 || (gb == nil && lb == nil) {
		return nil
	}
	return wrap(op, be.launchBlocks(kFreshTopK, rows, cols, ptr(cb), ptr(tb), ptr(gb), ptr(lb), i(rows), i(cols), i(k),
		f(gradScale), flag(tb != nil), flag(gb != nil), flag(lb != nil)))
}

package docker

import "testing"

func TestCFSQuota(t *testing.T) {
	for _, tc := range []struct {
		nano, period, quota int64
	}{
		{1e9 / 16, 16_000, 1_000}, // lite: the 1 ms minimum quota sets the period
		{1e9 / 4, 10_000, 2_500},  // basic
		{5e8, 10_000, 5_000},
		{4e9, 10_000, 40_000}, // more than one CPU: a quota over the period
	} {
		period, quota := cfsQuota(tc.nano)
		if period != tc.period || quota != tc.quota {
			t.Errorf("cfsQuota(%d) = %d/%d µs, want %d/%d", tc.nano, quota, period, tc.quota, tc.period)
		}
		if got := quota * 1e9 / period; got != tc.nano {
			t.Errorf("cfsQuota(%d) gives a share of %d", tc.nano, got)
		}
	}
}

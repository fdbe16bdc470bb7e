//! Group volume: the mean of the players' volumes, and how setting it moves
//! each player.

/// Group volume as the rounded mean of player volumes; 100 for an empty group.
pub fn group_volume(volumes: &[u8]) -> u8 {
    if volumes.is_empty() {
        return 100;
    }
    let sum: u32 = volumes.iter().map(|&v| u32::from(v)).sum();
    ((sum as f64) / volumes.len() as f64).round() as u8
}

/// Group mute: true only when every player is muted.
pub fn group_muted(muted: &[bool]) -> bool {
    !muted.is_empty() && muted.iter().all(|&m| m)
}

/// Computes new player volumes that bring the group volume to `requested`.
///
/// The delta from the current mean is added to every player. Players pushed
/// past 0 or 100 are clamped, and the part of the delta they lost is spread
/// evenly over the players that are not clamped, repeatedly, until all of it
/// is applied or every player sits at a bound. Relative levels stay as they
/// were wherever the bounds allow.
pub fn set_group_volume(volumes: &[u8], requested: u8) -> Vec<u8> {
    if volumes.is_empty() {
        return Vec::new();
    }
    let requested = f64::from(requested.min(100));
    let mut levels: Vec<f64> = volumes.iter().map(|&v| f64::from(v)).collect();
    let current = levels.iter().sum::<f64>() / levels.len() as f64;
    let mut clamped = vec![false; levels.len()];
    let mut per_player = requested - current;

    // Each round clamps at least one more player or applies everything, so
    // it ends within one round per player.
    for _ in 0..=levels.len() {
        let mut lost = 0.0;
        for (level, is_clamped) in levels.iter_mut().zip(clamped.iter_mut()) {
            if *is_clamped {
                continue;
            }
            let proposed = *level + per_player;
            let bounded = proposed.clamp(0.0, 100.0);
            if bounded != proposed {
                *is_clamped = true;
                lost += proposed - bounded;
            }
            *level = bounded;
        }
        let free = clamped.iter().filter(|c| !**c).count();
        if lost.abs() < 1e-9 || free == 0 {
            break;
        }
        per_player = lost / free as f64;
    }
    levels
        .iter()
        .map(|&level| level.round().clamp(0.0, 100.0) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_is_group_volume() {
        assert_eq!(group_volume(&[20, 40]), 30);
        assert_eq!(group_volume(&[]), 100);
    }

    #[test]
    fn delta_is_spread_evenly() {
        assert_eq!(set_group_volume(&[20, 40], 50), vec![40, 60]);
    }

    #[test]
    fn clamped_loss_is_redistributed() {
        // Mean 60, request 90: +30 each would push 90 to 120. The 20 lost
        // goes to the other two, which end at 60 + 30 + 10 each.
        let volumes = set_group_volume(&[90, 50, 40], 90);
        assert_eq!(volumes, vec![100, 90, 80]);
        assert_eq!(group_volume(&volumes), 90);
    }

    #[test]
    fn clamping_at_zero_is_redistributed() {
        // Mean 40, request 10: -30 each would push 10 to -20. The -20 lost
        // goes to the other two, which end at 50 - 40 and 60 - 40.
        let volumes = set_group_volume(&[10, 50, 60], 10);
        assert_eq!(volumes, vec![0, 10, 20]);
        assert_eq!(group_volume(&volumes), 10);
    }

    #[test]
    fn clamping_repeats_until_the_delta_is_applied() {
        // Mean 53.3, request 90: +36.7 each clamps 90 at 100, losing 26.7,
        // which gives the other two 13.3 more. That pushes 60 to 110,
        // clamped again, losing 10, which the last player takes:
        // 10 + 36.7 + 13.3 + 10 = 70.
        let volumes = set_group_volume(&[90, 60, 10], 90);
        assert_eq!(volumes, vec![100, 100, 70]);
        assert_eq!(group_volume(&volumes), 90);
        // Two clamped in the first round: 90 and 80 lose 25 and 15, and
        // the other two take 20 each.
        assert_eq!(
            set_group_volume(&[90, 80, 10, 20], 85),
            vec![100, 100, 65, 75]
        );
    }

    #[test]
    fn clamping_at_both_bounds_leaves_the_nearest_volume() {
        // One player fixed at each end cannot move the mean past them:
        // a request of 100 with [0, 100] reaches 100 for both, and a
        // request of 0 reaches 0 for both.
        assert_eq!(set_group_volume(&[0, 100], 100), vec![100, 100]);
        assert_eq!(set_group_volume(&[0, 100], 0), vec![0, 0]);
        // A single player takes the request as it is.
        assert_eq!(set_group_volume(&[37], 64), vec![64]);
    }

    #[test]
    fn request_of_100_reaches_100_everywhere() {
        assert_eq!(set_group_volume(&[10, 95, 60], 100), vec![100, 100, 100]);
    }

    #[test]
    fn request_of_0_reaches_0_everywhere() {
        assert_eq!(set_group_volume(&[10, 95, 60], 0), vec![0, 0, 0]);
    }

    #[test]
    fn mute_needs_every_player() {
        assert!(group_muted(&[true, true]));
        assert!(!group_muted(&[true, false]));
        assert!(!group_muted(&[]));
    }
}

//! Rail 2 in a run (to come).
use crate::world::World;
/// Rail 2's part of a run.
#[derive(Debug)]
pub struct SmsRail;
impl SmsRail {
    /// New.
    pub fn new(_world: &mut World) -> SmsRail {
        SmsRail
    }
    /// Step.
    pub fn step(&mut self, _world: &mut World) {}
    /// Check.
    pub fn check(&mut self, _world: &mut World) {}
    /// Settle.
    pub fn settle(&mut self, _world: &mut World) {}
    /// Final check.
    pub fn final_check(&mut self, _world: &mut World) {}
}

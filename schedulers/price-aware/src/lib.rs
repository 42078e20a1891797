//! Price-aware scheduler: most processing power per unit of bounty first, within budget and constraints

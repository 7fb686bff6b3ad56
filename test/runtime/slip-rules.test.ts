import { createMemoryBus } from '../../src/bus/index.js';
import { describeSlipScenarios } from './slip-scenarios.js';

describeSlipScenarios('memory', { create: async () => createMemoryBus() });

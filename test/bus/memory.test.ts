import { createMemoryBus } from '../../src/bus/index.js';
import { describeBusContract } from './bus-contract.js';

describeBusContract('memory', { create: async (prefix) => createMemoryBus({ prefix }) });

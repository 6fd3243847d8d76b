// The matchers jest-setup.js adds (toBeInTheDocument, ...), for the type check of the tests.
import '@testing-library/jest-dom';
